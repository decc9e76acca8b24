#!/usr/bin/env bash
# Install zam-plugins (VST3 bundles: ZamEQ2, ZamComp, ...) from Debian trixie.
#
# Debian bookworm has no VST3 package; trixie's zam-plugins installs on bookworm and its
# bundles load headless in pedalboard. The mirror is derived from this machine's own apt
# sources (never hard-coded); trixie's package lists live in a private state directory,
# so the system's apt configuration and lists are left untouched.
#
# Exit status: 0 when /usr/lib/vst3/ZamEQ2.vst3 is present afterwards, non-zero otherwise.
set -euo pipefail

if [ -d /usr/lib/vst3/ZamEQ2.vst3 ]; then
    echo "zam-plugins: already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# The first Debian archive URI in the existing sources (deb822 or one-line format),
# ignoring the security archive.
mirror=""
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    case "$f" in
        *.sources) uris=$(awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' "$f") ;;
        *) uris=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; break}}' "$f") ;;
    esac
    for u in $uris; do
        case "$u" in
            *security*) ;;
            */debian|*/debian/) mirror="${u%/}"; break 2 ;;
        esac
    done
done
if [ -z "$mirror" ]; then
    echo "zam-plugins: no Debian mirror found in the apt sources" >&2
    exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "zam-plugins: using $mirror, suite trixie"

state=$(mktemp -d /tmp/afxmatch-apt-trixie.XXXXXX)
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc"
cat > "$state/etc/trixie.sources" <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: $keyring
SRC
# Debian's signing keys rotate per release; trixie's key may be missing from an older
# keyring. Check-Valid-Until is relaxed for snapshot mirrors.
opts=(-o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
      -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$state/etc"
      -o "Acquire::Check-Valid-Until=false" -o "APT::Get::List-Cleanup=false")
$SUDO apt-get "${opts[@]}" -q update
(cd "$state" && $SUDO apt-get "${opts[@]}" -q download zam-plugins)
deb=$(ls "$state"/zam-plugins_*.deb)
echo "zam-plugins: downloaded $(basename "$deb")"
# Dependencies come from the machine's own (bookworm) sources.
$SUDO apt-get -q update || true
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends "$deb"
test -d /usr/lib/vst3/ZamEQ2.vst3
echo "zam-plugins: installed ($(ls /usr/lib/vst3 | tr '\n' ' '))"
