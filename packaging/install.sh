#!/usr/bin/env bash
# Headless install of a built lyrad binary as a systemd service (run as root on Ubuntu).
#   sudo packaging/install.sh dist/lyrad
set -euo pipefail
binary="${1:-dist/lyrad}"
here="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$binary" ] || { echo "no lyrad binary at $binary (build it with: make package)"; exit 1; }
id lyra >/dev/null 2>&1 || useradd --system --home /var/lib/lyra --shell /usr/sbin/nologin lyra
install -m 0755 "$binary" /usr/bin/lyrad
install -d -m 0750 -o root -g lyra /etc/lyra
[ -f /etc/lyra/lyra.toml ] || install -m 0640 -o root -g lyra "$here/firmware-config/lyra.toml" /etc/lyra/lyra.toml
install -d -m 0700 -o lyra -g lyra /var/lib/lyra
install -m 0644 "$here/systemd/lyrad.service" /etc/systemd/system/lyrad.service
echo "Edit /etc/lyra/lyra.toml (storage.data_dir is overridden to /var/lib/lyra; set paper.dataset), then:"
echo "  sudo -u lyra LYRA_CONFIG=/etc/lyra/lyra.toml LYRA_HOME=/var/lib/lyra lyrad init"
echo "  sudo systemctl daemon-reload && sudo systemctl enable --now lyrad"
