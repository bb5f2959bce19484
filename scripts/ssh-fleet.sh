#!/usr/bin/env bash
# A fleet of real OpenSSH servers for `claw bench ssh`: N sshd, each in its own network
# namespace (veth pair, 10.77.<i>.2:22 reached from 10.77.<i>.1), each with its own host key,
# one authorized client key, and a claw root/home whose hosts.yaml and known_hosts name them
# (every host in group `all` and `fleet`, host `h1` alone too). Needs root (ip netns).
#
#   scripts/ssh-fleet.sh up N DIR     start (DIR/root = CLAW_ROOT, DIR/home = CLAW_HOME)
#   scripts/ssh-fleet.sh down N DIR   stop the sshd and remove the namespaces
#   scripts/ssh-fleet.sh ansible DIR  write DIR/inventory.ini for the same hosts and key
#   scripts/ssh-fleet.sh daemon-rss DIR CLAW
#                                     the RSS of `CLAW serve` idle, then after an `ssh` cron job
#                                     ran `uptime` on every host twice (its pool keeps them)
#
# With NETNS=0 the servers listen on 127.0.0.1 ports 22201.. instead (no namespaces).
set -euo pipefail
cmd=${1:?up|down|ansible}
n=${2:?N}
dir=${3:-}
case $cmd in ansible | daemon-rss) dir=$2 ;; esac
dir=${dir:?DIR}
netns=${NETNS:-1}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

addr() { if [ "$netns" = 1 ]; then echo "10.77.$1.2 22"; else echo "127.0.0.1 $((22200 + $1))"; fi; }

up() {
    mkdir -p "$dir/root" "$dir/home" /run/sshd
    chmod 700 "$dir/home"
    [ -f "$dir/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client"
    : >"$dir/home/known_hosts"
    echo "hosts:" >"$dir/root/hosts.yaml"
    for i in $(seq 1 "$n"); do
        local h="$dir/h$i"
        mkdir -p "$h"
        [ -f "$h/hostkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$h/hostkey"
        cp "$dir/client.pub" "$h/authorized_keys"
        read -r ip port < <(addr "$i")
        cat >"$h/sshd_config" <<EOF
Port $port
ListenAddress $ip
HostKey $h/hostkey
PidFile $h/sshd.pid
AuthorizedKeysFile $h/authorized_keys
PermitRootLogin yes
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxSessions 10
MaxStartups 100
LogLevel ERROR
EOF
        if [ "$netns" = 1 ]; then
            ip netns add "clawssh$i"
            ip link add "clawv$i" type veth peer name "clawp$i"
            ip link set "clawp$i" netns "clawssh$i"
            ip addr add "10.77.$i.1/24" dev "clawv$i"
            ip link set "clawv$i" up
            ip netns exec "clawssh$i" ip addr add "10.77.$i.2/24" dev "clawp$i"
            ip netns exec "clawssh$i" ip link set "clawp$i" up
            ip netns exec "clawssh$i" ip link set lo up
            ip netns exec "clawssh$i" /usr/sbin/sshd -f "$h/sshd_config" -E "$h/sshd.log"
        else
            /usr/sbin/sshd -f "$h/sshd_config" -E "$h/sshd.log"
        fi
        local hk
        hk=$(cut -d' ' -f1,2 "$h/hostkey.pub")
        if [ "$port" = 22 ]; then echo "$ip $hk" >>"$dir/home/known_hosts"; else echo "[$ip]:$port $hk" >>"$dir/home/known_hosts"; fi
        printf '  - alias: h%s\n    hostname: %s\n    port: %s\n    username: root\n    key_file: %s\n    groups: [fleet]\n' \
            "$i" "$ip" "$port" "$dir/client" >>"$dir/root/hosts.yaml"
    done
    # Wait for every server to answer.
    for i in $(seq 1 "$n"); do
        read -r ip port < <(addr "$i")
        for _ in $(seq 1 50); do
            (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && break
            sleep 0.1
        done
    done
}

down() {
    for i in $(seq 1 "$n"); do
        local pidf="$dir/h$i/sshd.pid"
        [ -f "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null || true
        rm -f "$pidf"
        if [ "$netns" = 1 ]; then
            ip link del "clawv$i" 2>/dev/null || true
            ip netns del "clawssh$i" 2>/dev/null || true
        fi
    done
}

ansible_inventory() {
    local inv="$dir/inventory.ini"
    echo "[all]" >"$inv"
    awk '/alias:/{a=$3} /hostname:/{h=$2} /port:/{print a" ansible_host="h" ansible_port="$2}' \
        "$dir/root/hosts.yaml" >>"$inv"
    printf '[all:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\nansible_python_interpreter=/usr/bin/python3\nansible_ssh_common_args=-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes\n' \
        "$dir/client" "$dir/home/known_hosts" >>"$inv"
    echo "$inv"
}

daemon_rss() {
    local claw=${1:?CLAW}
    export CLAW_ROOT="$dir/root" CLAW_HOME="$dir/home" HOME="$dir/userhome"
    mkdir -p "$HOME"
    "$claw" serve --bind "127.0.0.1:${PORT:-8299}" >"$dir/serve.log" 2>&1 &
    local pid=$!
    sleep 10
    echo "idle daemon: $(grep VmRSS /proc/$pid/status)"
    "$claw" cron add fleet-rss "every 1m" uptime --type ssh --arg target=all >/dev/null
    for _ in $(seq 1 150); do
        [ "$(grep -c 'job .* (fleet-rss) ok' "$dir/serve.log")" -ge 2 ] && break
        sleep 1
    done
    echo "after two runs on every host: $(grep VmRSS /proc/$pid/status)," \
        "$(ss -tnp | grep -c "pid=$pid,") TCP connections held, $(grep -c '(fleet-rss) ok' "$dir/serve.log") runs ok"
    "$claw" cron remove fleet-rss >/dev/null
    kill "$pid"
    wait "$pid" || true
}

case $cmd in
up) up ;;
daemon-rss) daemon_rss "${3:-}" ;;
down) down ;;
ansible) ansible_inventory ;;
*) echo "usage: $0 up|down N DIR | ansible DIR | daemon-rss DIR CLAW" >&2; exit 2 ;;
esac
