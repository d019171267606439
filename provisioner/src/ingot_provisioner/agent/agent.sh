#!/bin/sh
# ingot.metal deploy agent: runs as root in the deploy ramdisk of a real node, or in the lab's firmware.
#
#   agent.sh [--url URL] [--token TOKEN] [--mode deploy|wipe|discover] [--target PATH] [ingot.KEY=VALUE ...]
#
# Parameters: the arguments first, then INGOT_URL / INGOT_TOKEN / INGOT_MODE / INGOT_TARGET, then the kernel
# command line (ingot.url= ingot.token= ingot.mode= ingot.target= in /proc/cmdline, as the iPXE script sets them).
#   deploy    fetch the manifest, stream the image (tar, tar.gz or raw) to the target while its sha256 is
#             computed, install it only once the checksum matched, write the cloud-init NoCloud seed to
#             TARGET/var/lib/cloud/seed/nocloud/, report, reboot.
#   wipe      erase the target (directory: everything in it; block device: discard + zero both ends), report,
#             reboot. (The manifest decides between deploy and wipe; --mode only selects discover.)
#   discover  report MACs, CPU count, memory and disk size to POST /discovery (no token), then power off.
# The target is a directory for tar images (the lab's disk is one) or a block device (or file) for raw ones.
#
# Needs: POSIX sh, curl, sha256sum, tar, gzip, dd, sed and coreutils (mkfifo, tee, df, nproc, mktemp);
# uses openssl for the checksum when it is there (faster).
# Environment:
#   INGOT_REBOOT_CMD          run after a successful deploy or wipe   (default: reboot -f)
#   INGOT_DISCOVER_DONE_CMD   run after discovery                     (default: poweroff -f)
#   INGOT_PROGRESS_INTERVAL   seconds between progress reports        (default: 5)
#   INGOT_TAR_OPTS            extra GNU tar extract options, e.g. "--xattrs --xattrs-include=*"
#   INGOT_CMDLINE             kernel parameters file                  (default: /proc/cmdline)
#   INGOT_SYSFS_NET           network interfaces directory            (default: /sys/class/net)
#   INGOT_WORKDIR             scratch directory                       (default: mktemp -d)
# Exit status: 0 done (after the reboot hook), 1 failed (reported to the provisioner when possible), 2 usage.

set -u
umask 022
PROG=ingot-agent
STAGING_NAME=.ingot-staging

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

usage() {
    sed -n '2,30s/^# \{0,1\}//p' "$0" 2>/dev/null || true
}

# --- parameters ---------------------------------------------------------------------------------------
A_URL='' A_TOKEN='' A_MODE='' A_TARGET=''
C_URL='' C_TOKEN='' C_MODE='' C_TARGET=''

# kv PREFIX WORD: ingot.KEY=VALUE into ${PREFIX}_KEY
kv() {
    case $2 in
        ingot.url=*) eval "$1_URL=\${2#ingot.url=}" ;;
        ingot.token=*) eval "$1_TOKEN=\${2#ingot.token=}" ;;
        ingot.mode=*) eval "$1_MODE=\${2#ingot.mode=}" ;;
        ingot.target=*) eval "$1_TARGET=\${2#ingot.target=}" ;;
        *) return 1 ;;
    esac
}

CMDLINE_FILE=${INGOT_CMDLINE:-/proc/cmdline}
if [ -r "$CMDLINE_FILE" ]; then
    cmdline=''
    IFS= read -r cmdline < "$CMDLINE_FILE" || true
    set -f
    # shellcheck disable=SC2086 # word splitting of the kernel command line is intended
    for word in $cmdline; do kv C "$word" || true; done
    set +f
fi

while [ $# -gt 0 ]; do
    case $1 in
        --url|--token|--mode|--target)
            [ $# -ge 2 ] || { log "$1 needs a value"; exit 2; }
            opt=$(printf '%s' "${1#--}" | tr '[:lower:]' '[:upper:]')
            eval "A_$opt=\$2"
            shift 2 ;;
        --url=*|--token=*|--mode=*|--target=*)
            opt=${1%%=*}; opt=$(printf '%s' "${opt#--}" | tr '[:lower:]' '[:upper:]')
            eval "A_$opt=\${1#*=}"
            shift ;;
        ingot.*=*)
            kv A "$1" || { log "unknown parameter: ${1%%=*}"; exit 2; }
            shift ;;
        -h|--help) usage; exit 0 ;;
        *) log "unknown argument: $1 (see --help)"; exit 2 ;;
    esac
done

URL=${A_URL:-${INGOT_URL:-$C_URL}}
TOKEN=${A_TOKEN:-${INGOT_TOKEN:-$C_TOKEN}}
MODE=${A_MODE:-${INGOT_MODE:-$C_MODE}}
TARGET=${A_TARGET:-${INGOT_TARGET:-$C_TARGET}}
URL=${URL%/}
INTERVAL=${INGOT_PROGRESS_INTERVAL:-5}

[ -n "$URL" ] || { log "no provisioner URL (--url, INGOT_URL or ingot.url= on the kernel command line)"; exit 2; }
case $URL in http://*|https://*) ;; *) log "not an http(s) URL: $URL"; exit 2 ;; esac
case ${MODE:-deploy} in deploy|wipe|discover) ;; *) log "unknown mode '$MODE' (deploy, wipe or discover)"; exit 2 ;; esac

# --- scratch space, cleaned on exit ---------------------------------------------------------------------
W=${INGOT_WORKDIR:-}
OWN_W=0
if [ -z "$W" ]; then
    W=$(mktemp -d "${TMPDIR:-/tmp}/ingot-agent.XXXXXX") || { log "cannot create a scratch directory"; exit 2; }
    OWN_W=1
fi
STAGE=''
PROGRESS_PID=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$PROGRESS_PID" ]; then kill "$PROGRESS_PID" 2>/dev/null; fi
    if [ "$OWN_W" = 1 ]; then rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ -n "$TOKEN" ]; then
    # the token goes to curl in a file, never on a command line (ps) or in a log
    (umask 077; printf 'Authorization: Bearer %s\n' "$TOKEN" > "$W/auth")
else
    : > "$W/auth"
fi

# --- HTTP helpers -------------------------------------------------------------------------------------
json_escape() {
    printf '%.3800s' "$1" | tr '\n\r\t' '   ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

# http_get PATH OUTFILE: GET with the token; 0 on HTTP 200, else logs the provisioner's answer
http_get() {
    n=0
    while :; do
        code=$(curl -sS --connect-timeout 10 -m 120 -H "@$W/auth" -o "$2" -w '%{http_code}' "$URL$1" \
               2>"$W/curl.err") || code=000
        case $code in
            200) return 0 ;;
            4??) log "GET $1 refused (HTTP $code): $(head -c 600 "$2" 2>/dev/null)"; return 1 ;;
        esac
        n=$((n + 1))
        if [ "$n" -ge 5 ]; then
            log "GET $1 failed (HTTP $code): $(head -c 300 "$W/curl.err") $(head -c 300 "$2" 2>/dev/null)"
            return 1
        fi
        sleep 2
    done
}

# report STATUS MESSAGE [EXTRA_JSON_MEMBERS]: POST /agent/report (retried on network/5xx errors)
report() {
    r_out="$W/report.$$.$1.out"
    r_body="{\"status\":\"$1\",\"message\":\"$(json_escape "$2")\"${3:+,$3}}"
    r_n=0
    while :; do
        r_code=$(curl -sS --connect-timeout 10 -m 30 -H "@$W/auth" -H 'Content-Type: application/json' \
                 --data-binary "$r_body" -o "$r_out" -w '%{http_code}' "$URL/agent/report" 2>/dev/null) || r_code=000
        case $r_code in
            2??) return 0 ;;
            4??) log "report '$1' refused (HTTP $r_code): $(head -c 600 "$r_out" 2>/dev/null)"; return 1 ;;
        esac
        r_n=$((r_n + 1))
        if [ "$r_n" -ge "${INGOT_REPORT_TRIES:-10}" ]; then
            log "cannot report '$1' to $URL (HTTP $r_code)"
            return 1
        fi
        sleep 2
    done
}

fail() {
    log "FAILED: $1"
    report failed "$1" "${2:-}" || true
    exit 1
}

run_hook() {
    log "running: $1"
    sync
    sh -c "$1"
}

# --- target helpers -----------------------------------------------------------------------------------
check_target() {
    case $TARGET in
        /) fail "refusing target '/'" ;;
        /*) ;;
        *) fail "target must be an absolute path, got '$TARGET'" ;;
    esac
}

RM_OPTS=''
case $(rm --version 2>/dev/null) in *GNU*) RM_OPTS='--one-file-system' ;; esac

# empty_dir DIR [KEEP_NAME]: remove everything in DIR (dotfiles included) except KEEP_NAME
empty_dir() {
    for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        [ -n "${2:-}" ] && [ "${f##*/}" = "$2" ] && continue
        # shellcheck disable=SC2086 # RM_OPTS is empty or one option
        rm -rf $RM_OPTS -- "$f" || return 1
    done
}

block_size() {
    b_dev=$(readlink -f "$1")
    b_name=${b_dev##*/}
    if [ -r "/sys/class/block/$b_name/size" ]; then
        read -r b_sectors < "/sys/class/block/$b_name/size"
        echo $((b_sectors * 512))
    elif command -v blockdev >/dev/null 2>&1; then
        blockdev --getsize64 "$1"
    else
        echo 0
    fi
}

# zero_ends DEV: zero the first and last 64 MiB (partition tables, boot sectors, GPT backup)
zero_ends() {
    z_size=$(block_size "$1")
    dd if=/dev/zero of="$1" bs=1M count=64 conv=fsync 2>/dev/null || return 1
    z_mib=$((z_size / 1048576))
    if [ "$z_mib" -gt 128 ]; then
        dd if=/dev/zero of="$1" bs=1M seek=$((z_mib - 64)) count=64 conv=fsync 2>/dev/null || return 1
    fi
}

io_bytes() {
    i_bytes=0
    if [ -r "/proc/$1/io" ]; then
        while read -r i_key i_val; do
            [ "$i_key" = "rchar:" ] && i_bytes=$i_val
        done < "/proc/$1/io"
    fi
    echo "$i_bytes"
}

# progress_loop PID NAME: report the bytes PID has read, every INTERVAL seconds, until killed
progress_loop() {
    p_sleep=''
    # shellcheck disable=SC2317 # the TERM trap: take the sleep along, so nothing holds our output open
    trap 'if [ -n "$p_sleep" ]; then kill "$p_sleep" 2>/dev/null; fi; exit 0' TERM
    while :; do
        sleep "$INTERVAL" &
        p_sleep=$!
        wait "$p_sleep"
        p_sleep=''
        kill -0 "$1" 2>/dev/null || break
        p_bytes=$(io_bytes "$1")
        report progress "writing image $2: $p_bytes bytes so far" "\"bytes_written\":$p_bytes" || true
    done
}

# --- deploy -------------------------------------------------------------------------------------------
# SHA-256 bounds the stream on CPUs without SHA extensions: openssl's is about twice coreutils' there
HASH_CMD=sha256sum
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
if command -v openssl >/dev/null 2>&1; then
    e_sum=$(printf '' | openssl dgst -sha256 -r 2>/dev/null) || e_sum=''
    [ "${e_sum%% *}" = "$EMPTY_SHA256" ] && HASH_CMD='openssl dgst -sha256 -r'
fi
TAR_OPTS=''
case $(tar --version 2>/dev/null) in *"GNU tar"*) TAR_OPTS='--numeric-owner' ;; esac

# unpack: stdin -> staging dir (tar formats) or the target (raw); drains what it did not read
unpack() {
    case $IMG_FORMAT in
        tar)
            # shellcheck disable=SC2086 # option lists
            tar -x -f - -C "$STAGE" $TAR_OPTS ${INGOT_TAR_OPTS:-} 2>"$W/unpack.err"
            u_rc=$? ;;
        tar.gz)
            # shellcheck disable=SC2086 # option lists
            { gzip -dc; echo $? > "$W/gzip.rc"; } | tar -x -f - -C "$STAGE" $TAR_OPTS ${INGOT_TAR_OPTS:-} 2>"$W/unpack.err"
            u_rc=$?
            read -r g_rc < "$W/gzip.rc" 2>/dev/null || g_rc=1
            [ "$u_rc" = 0 ] && u_rc=$g_rc ;;
        raw)
            dd of="$TARGET" bs=4M iflag=fullblock 2>"$W/unpack.err"
            u_rc=$? ;;
    esac
    cat > /dev/null
    return "$u_rc"
}

deploy() {
    check_target
    case $IMG_FORMAT in
        tar|tar.gz)
            [ -d "$TARGET" ] || fail "target $TARGET is not a directory (image '$IMG_NAME' is $IMG_FORMAT)"
            STAGE="$TARGET/$STAGING_NAME"
            if ! { rm -rf "$STAGE" && mkdir -m 0755 "$STAGE"; }; then
                fail "cannot create the staging directory $STAGE"
            fi ;;
        raw)
            [ -b "$TARGET" ] || [ -f "$TARGET" ] || fail "target $TARGET is not a block device (image '$IMG_NAME' is raw)" ;;
        *) fail "image '$IMG_NAME': unknown format '$IMG_FORMAT'" ;;
    esac
    report progress "deploying image '$IMG_NAME' ($IMG_FORMAT, ${IMG_SIZE:-?} bytes) to $TARGET" || true

    # curl -> tee -> unpack, tee -> sha256sum: the checksum is computed while the image streams
    rm -f "$W/dl" "$W/sum" "$W/ex"
    mkfifo "$W/dl" "$W/sum" "$W/ex" || fail "mkfifo failed in $W"
    # shellcheck disable=SC2086 # a command with its options
    $HASH_CMD < "$W/sum" > "$W/sha" &
    sum_pid=$!
    unpack < "$W/ex" &
    unpack_pid=$!
    tee "$W/sum" < "$W/dl" > "$W/ex" &
    tee_pid=$!
    progress_loop "$tee_pid" "$IMG_NAME" &
    PROGRESS_PID=$!
    case $IMG_URL in "$URL"/*) auth="@$W/auth" ;; *) auth="X-Ingot-Agent: 1" ;; esac
    curl -fsS --connect-timeout 10 -H "$auth" -w '%{stderr}ingot-size=%{size_download}\n' \
        "$IMG_URL" > "$W/dl" 2>"$W/curl.err"
    curl_rc=$?
    wait "$tee_pid"; tee_rc=$?
    wait "$unpack_pid"; unpack_rc=$?
    wait "$sum_pid"; sum_rc=$?
    kill "$PROGRESS_PID" 2>/dev/null; wait "$PROGRESS_PID" 2>/dev/null; PROGRESS_PID=''

    size=$(sed -n 's/^ingot-size=//p' "$W/curl.err" | tail -n 1)
    size=${size:-0}
    got=''
    [ "$sum_rc" = 0 ] && read -r got _ < "$W/sha"

    if [ "$curl_rc" != 0 ]; then
        undo_partial
        fail "download of image '$IMG_NAME' from $IMG_URL failed (curl exit $curl_rc: $(grep -v '^ingot-size=' "$W/curl.err" | head -c 300)); nothing was installed on $TARGET" \
            "\"bytes_written\":$size"
    fi
    if [ "$got" != "$IMG_SHA256" ]; then
        undo_partial
        fail "checksum mismatch for image '$IMG_NAME': expected sha256 $IMG_SHA256, got ${got:-none} ($size bytes from $IMG_URL); nothing was installed on $TARGET" \
            "\"bytes_written\":$size${got:+,\"sha256\":\"$got\"}"
    fi
    if [ "$tee_rc" != 0 ] || [ "$unpack_rc" != 0 ]; then
        undo_partial
        fail "writing image '$IMG_NAME' to $TARGET failed (unpack exit $unpack_rc, tee exit $tee_rc: $(head -c 400 "$W/unpack.err")); nothing was installed" \
            "\"bytes_written\":$size,\"sha256\":\"$got\""
    fi
    log "image '$IMG_NAME': $size bytes, sha256 $got verified"

    case $IMG_FORMAT in
        raw)
            sync
            seed_note=$(write_seed_raw) || seed_note="no cloud-init seed written" ;;
        *)
            write_seed "$STAGE" || { undo_partial; fail "cannot write the cloud-init seed of image '$IMG_NAME' to $TARGET"; }
            install_staged || fail "cannot move the staged image '$IMG_NAME' into place on $TARGET"
            seed_note="cloud-init seed written" ;;
    esac
    sync
    report succeeded "image '$IMG_NAME' (sha256 $got, $size bytes) installed on $TARGET; $seed_note" \
        "\"bytes_written\":$size,\"sha256\":\"$got\"" || { log "the provisioner refused the success report"; exit 1; }
    run_hook "${INGOT_REBOOT_CMD:-reboot -f}"
}

# undo_partial: leave nothing bootable behind
undo_partial() {
    if [ -n "$STAGE" ]; then
        # shellcheck disable=SC2086 # RM_OPTS is empty or one option
        rm -rf $RM_OPTS -- "$STAGE"
    elif [ -b "$TARGET" ]; then
        zero_ends "$TARGET"
    elif [ -f "$TARGET" ]; then
        : > "$TARGET"
    fi
}

# write_seed ROOT: the NoCloud seed (user-data holds the private host key: mode 0600)
write_seed() {
    s_dir="$1/var/lib/cloud/seed/nocloud"
    mkdir -p "$s_dir" && chmod 0700 "$s_dir" || return 1
    (umask 077
     http_get /agent/seed/meta-data "$s_dir/meta-data" && http_get /agent/seed/user-data "$s_dir/user-data") || return 1
}

# install_staged: replace the target's content by the staging directory's (renames; usr last)
install_staged() {
    empty_dir "$TARGET" "$STAGING_NAME" || return 1
    for f in "$STAGE"/* "$STAGE"/.[!.]* "$STAGE"/..?*; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        [ "${f##*/}" = usr ] && continue
        mv -f -- "$f" "$TARGET/" || return 1
    done
    if [ -e "$STAGE/usr" ]; then mv -f -- "$STAGE/usr" "$TARGET/" || return 1; fi
    rmdir "$STAGE"
    STAGE=''
}

# write_seed_raw: find the root filesystem in the partitions of the raw target and seed it (best effort)
write_seed_raw() {
    [ -b "$TARGET" ] || { echo "no cloud-init seed written (target is not a block device)"; return 0; }
    command -v mount >/dev/null 2>&1 || { echo "no cloud-init seed written (no mount)"; return 0; }
    command -v partprobe >/dev/null 2>&1 && partprobe "$TARGET" 2>/dev/null
    command -v blockdev >/dev/null 2>&1 && blockdev --rereadpt "$TARGET" 2>/dev/null
    sleep 1
    m_dir="$W/mnt"
    mkdir -p "$m_dir"
    for part in "$TARGET"[0-9]* "$TARGET"p[0-9]*; do
        [ -b "$part" ] || continue
        mount "$part" "$m_dir" 2>/dev/null || continue
        if [ -d "$m_dir/etc" ] && write_seed "$m_dir"; then
            umount "$m_dir"
            echo "cloud-init seed written to $part"
            return 0
        fi
        umount "$m_dir"
    done
    echo "no cloud-init seed written (no root filesystem found on $TARGET)"
}

# --- wipe ---------------------------------------------------------------------------------------------
wipe() {
    check_target
    report progress "wiping $TARGET" || true
    if [ -b "$TARGET" ]; then
        command -v blkdiscard >/dev/null 2>&1 && blkdiscard -f "$TARGET" 2>/dev/null
        zero_ends "$TARGET" || fail "zeroing $TARGET failed"
        what="block device $TARGET discarded and zeroed at both ends"
    elif [ -d "$TARGET" ]; then
        empty_dir "$TARGET" || fail "cannot remove everything in $TARGET"
        what="directory $TARGET emptied"
    elif [ -f "$TARGET" ]; then
        : > "$TARGET" || fail "cannot truncate $TARGET"
        what="file $TARGET truncated"
    else
        fail "target $TARGET does not exist"
    fi
    sync
    report succeeded "wipe done: $what" || { log "the provisioner refused the success report"; exit 1; }
    run_hook "${INGOT_REBOOT_CMD:-reboot -f}"
}

# --- discovery ----------------------------------------------------------------------------------------
discover() {
    macs=''
    for d in "${INGOT_SYSFS_NET:-/sys/class/net}"/*; do
        [ -r "$d/address" ] || continue
        [ "${d##*/}" = lo ] && continue
        addr=''
        read -r addr < "$d/address" || true
        case $addr in
            00:00:00:00:00:00) continue ;;
            [0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]) ;;
            *) continue ;;
        esac
        macs="$macs${macs:+,}\"$addr\""
    done
    [ -n "$macs" ] || { log "discovery: no network interface with a MAC address"; exit 1; }
    cpus=$(nproc --all 2>/dev/null || nproc 2>/dev/null || echo 0)
    mem_kb=0
    while read -r m_key m_val _; do
        [ "$m_key" = "MemTotal:" ] && mem_kb=$m_val
    done < /proc/meminfo
    disk_bytes=0
    if [ -b "${TARGET:-}" ]; then
        disk_bytes=$(block_size "$TARGET")
    elif [ -d "${TARGET:-}" ]; then
        # shellcheck disable=SC2046 # the fields of df's last line
        set -- $(df -Pk "$TARGET" 2>/dev/null | tail -n 1)
        disk_bytes=$(( ${2:-0} * 1024 ))
    fi
    boot_mode=bios
    [ -d /sys/firmware/efi ] && boot_mode=uefi
    body="{\"macs\":[$macs],\"facts\":{\"cpus\":$cpus,\"memory_mib\":$((mem_kb / 1024)),\"disk_gib\":$((disk_bytes / 1073741824)),\"arch\":\"$(json_escape "$(uname -m)")\",\"boot_mode\":\"$boot_mode\",\"discovered_target\":\"$(json_escape "${TARGET:-}")\"}}"
    n=0
    while :; do
        code=$(curl -sS --connect-timeout 10 -m 30 -H 'Content-Type: application/json' --data-binary "$body" \
               -o "$W/discovery.out" -w '%{http_code}' "$URL/discovery" 2>"$W/curl.err") || code=000
        case $code in
            2??) log "discovery: $(head -c 300 "$W/discovery.out")"; break ;;
            4??) log "discovery refused (HTTP $code): $(head -c 600 "$W/discovery.out")"; exit 1 ;;
        esac
        n=$((n + 1))
        [ "$n" -ge 10 ] && { log "discovery: cannot reach $URL (HTTP $code)"; exit 1; }
        sleep 2
    done
    run_hook "${INGOT_DISCOVER_DONE_CMD:-poweroff -f}"
}

# --- main ---------------------------------------------------------------------------------------------
if [ "$MODE" = discover ]; then
    TARGET=${TARGET:-/disk}
    discover
    exit 0
fi

[ -n "$TOKEN" ] || { log "no deploy token (--token, INGOT_TOKEN or ingot.token= on the kernel command line)"; exit 2; }
http_get "/agent/manifest?format=env" "$W/manifest" || { log "cannot fetch the manifest"; exit 1; }
M_MODE='' M_NODE='' M_TARGET='' IMG_NAME='' IMG_URL='' IMG_SHA256='' IMG_FORMAT='' IMG_SIZE=''
while IFS='=' read -r key value; do
    case $key in
        mode) M_MODE=$value ;;
        node) M_NODE=$value ;;
        target) M_TARGET=$value ;;
        image_name) IMG_NAME=$value ;;
        image_url) IMG_URL=$value ;;
        image_sha256) IMG_SHA256=$value ;;
        image_format) IMG_FORMAT=$value ;;
        image_size) IMG_SIZE=$value ;;
    esac
done < "$W/manifest"
TARGET=${TARGET:-${M_TARGET:-/disk}}
if [ -n "$MODE" ] && [ "$MODE" != "$M_MODE" ]; then
    log "the kernel command line says mode '$MODE', the provisioner says '$M_MODE': following the provisioner"
fi
log "node $M_NODE: mode $M_MODE, target $TARGET"
case $M_MODE in
    deploy)
        case $IMG_SHA256 in
            *[!0-9a-f]*|'') fail "manifest of node $M_NODE: bad sha256 '$IMG_SHA256' for image '$IMG_NAME'" ;;
        esac
        [ ${#IMG_SHA256} = 64 ] || fail "manifest of node $M_NODE: bad sha256 '$IMG_SHA256' for image '$IMG_NAME'"
        deploy ;;
    wipe) wipe ;;
    *) fail "manifest of node $M_NODE: unknown mode '$M_MODE'" ;;
esac
exit 0
