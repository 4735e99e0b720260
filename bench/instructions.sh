#!/usr/bin/env bash
# Instructions per unicast publish (issue #15), counted by callgrind: a figure that does not move
# with what else the machine is doing, unlike publishes per second. For each hub (Tidings, and the
# bare axum baseline), one stream for user u1 and one kept-alive publisher posting
# {"to": "u1", "event": "message", "data": ...} and waiting for each answer; run with 500 and with
# 2,500 publishes, the difference divided by 2,000 (start-up and shutdown cancel out). User-space
# instructions only: the kernel's share (the sends, the same for both) is not counted.
#
# Usage: bench/instructions.sh [target/release/tidings]
set -euo pipefail
tidings=${1:-target/release/tidings}
baseline=$(dirname "$tidings")/tidings-baseline
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

client() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
stream = socket.create_connection(("127.0.0.1", port))
stream.sendall(b"GET /stream-sse?user=u1 HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(0.5)
stream.setblocking(False)
pub = socket.create_connection(("127.0.0.1", port))
pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
got = 0
for i in range(n):
    body = b'{"to":"u1","event":"message","data":"{\\"t\\":%d}"}' % (1700000000000000000 + i)
    pub.sendall(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.startswith(b"HTTP/1.1 202"):
        chunk = pub.recv(4096)
        if not chunk:
            sys.exit("the hub closed the publisher's connection")
        answer += chunk
        if answer.startswith(b"HTTP/1.1 ") and not answer.startswith(b"HTTP/1.1 202"):
            sys.exit("a publish was refused: %r" % answer[:200])
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = [int(l.split(b":")[1]) for l in head.lower().split(b"\r\n") if l.startswith(b"content-length:")]
    while length and len(rest) < length[0]:
        rest += pub.recv(4096)
    try:
        while True:
            got += stream.recv(65536).count(b"\n\n")
    except BlockingIOError:
        pass
EOF
}

# Total instructions of one hub process serving `$2` publishes; `$1` is the hub command line
# (with PORT for the port).
count() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local out="$work/callgrind.$port"
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$out" ${1//PORT/$port} >"$work/hub.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 150); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
        sleep 0.2
    done
    client "$port" "$2"
    kill -TERM "$pid"
    wait "$pid" || true
    grep -h '^summary:' "$out"* | awk '{s += $2} END {print s}'
}

per_publish() {
    local small large
    small=$(count "$1" 500)
    large=$(count "$1" 2500)
    echo $(((large - small) / 2000))
}

mine=$(per_publish "$tidings --addr 127.0.0.1:PORT --tick-interval 0")
theirs=$(per_publish "$baseline 127.0.0.1:PORT")
echo "| hub | user-space instructions per unicast publish |"
echo "|---|---|"
echo "| Tidings | $mine ($(python3 -c "print(f'{$mine / $theirs:.2f}')")× the baseline) |"
echo "| baseline: bare axum handler | $theirs |"
