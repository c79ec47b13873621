# pam-totp %post ($1: 1 on installation, 2 on upgrade); what %systemd_post does.
# Fedora enables units only as the system's presets say: enable the agent with
#   systemctl enable --now pam-totp-agent.socket
if [ "$1" -eq 1 ] && [ -x /usr/bin/systemctl ]; then
    /usr/bin/systemctl --no-reload preset pam-totp-agent.socket >/dev/null 2>&1 || :
fi
