import socket, struct, sys
def q(name, qtype, edns=True, port=15353):
    hdr = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1 if edns else 0)
    qn = b"".join(bytes([len(l)])+l.encode() for l in name.split(".")) + b"\0"
    msg = hdr + qn + struct.pack(">HH", qtype, 1)
    if edns: msg += b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(msg, ("127.0.0.1", port)); r = s.recv(65535)
    return r
for n,t in [("two.example.test",1),("two.example.test",28),("_http._tcp.example.test",33),("alias.example.test",1),("nx.example.test",1),("big.example.test",1),("a.example.test",28)]:
    r = q(n,t)
    fl = struct.unpack(">H", r[2:4])[0]
    print(n,t,len(r),"flags %04x"%fl, struct.unpack(">HHHH", r[4:12]))
    print(r.hex())
