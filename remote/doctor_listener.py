import os, select, socket, sys, tempfile
d = tempfile.mkdtemp(prefix="jssh-doctor-")
p = os.path.join(d, "s")
s = socket.socket(socket.AF_UNIX)
try:
    s.bind(p)
    s.listen(1)
    print("listening " + p, flush=True)
    ready, _, _ = select.select([s, sys.stdin], [], [], 10)
    if s in ready:
        c, _ = s.accept()
        c.sendall(b"jssh-doctor\n")
        c.close()
except OSError:
    pass
finally:
    s.close()
    if os.path.exists(p):
        os.unlink(p)
    os.rmdir(d)
