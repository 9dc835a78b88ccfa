#!/usr/bin/env bash
# Installs what the loopback adb test needs: the adb client (Debian `adb`) and a private, unpacked
# adbd 34 from bookworm-backports. Nothing is installed system-wide except the adb package; the
# backports index lives in a private apt state folder, so /etc/apt is never touched.
# Usage: install.sh [CACHE_DIR]   (default ~/.cache/lean-adb-loopback). Prints CACHE_DIR on success.
set -euo pipefail

cache_dir="${1:-${HOME}/.cache/lean-adb-loopback}"
root_dir="${cache_dir}/root"
adbd_bin="${root_dir}/usr/lib/android-sdk/platform-tools/adbd"
mkdir -p "${cache_dir}"

if ! command -v adb >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "adb client missing and not root: run 'apt-get install adb'" >&2
        exit 3
    fi
    for attempt in 1 2 3 4 5 6; do
        # Another process may hold the dpkg lock; wait and retry.
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -q adb >"${cache_dir}/apt-install.log" 2>&1; then
            break
        fi
        if [ "${attempt}" = 1 ]; then apt-get update -q >>"${cache_dir}/apt-install.log" 2>&1 || true; fi
        sleep 10
    done
    command -v adb >/dev/null 2>&1 || { echo "apt-get install adb failed: see ${cache_dir}/apt-install.log" >&2; exit 3; }
fi

if [ ! -x "${adbd_bin}" ]; then
    # The same Debian mirror the system uses, suite bookworm-backports.
    mirror="$(grep -hvE '^[[:space:]]*#' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null | grep -oE 'https?://[^ ]+/debian/?( |$)' \
        | head -n1 | tr -d ' ' || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    apt_dir="${cache_dir}/apt"
    mkdir -p "${apt_dir}/lists/partial" "${apt_dir}/cache/archives/partial" "${cache_dir}/debs"
    printf 'deb %s bookworm main\ndeb %s bookworm-backports main\n' "${mirror%/}" "${mirror%/}" \
        > "${apt_dir}/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=${apt_dir}/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=${apt_dir}/lists" -o "Dir::Cache=${apt_dir}/cache"
              -o "APT::Sandbox::User=root" -q)
    apt-get "${apt_opts[@]}" update >"${cache_dir}/apt-backports.log" 2>&1 \
        || { echo "apt-get update for bookworm-backports failed: see ${cache_dir}/apt-backports.log" >&2; exit 3; }
    (cd "${cache_dir}/debs" && apt-get "${apt_opts[@]}" download \
        adbd/bookworm-backports android-libbase/bookworm-backports android-libcutils/bookworm-backports \
        android-liblog/bookworm-backports libprotobuf32 >>"${cache_dir}/apt-backports.log" 2>&1) \
        || { echo "apt-get download adbd failed: see ${cache_dir}/apt-backports.log" >&2; exit 3; }
    rm -rf "${root_dir}"
    for deb in "${cache_dir}"/debs/*.deb; do dpkg -x "${deb}" "${root_dir}"; done
fi
echo "${cache_dir}"
