# pam-totp %preun ($1: 0 on removal, 1 on upgrade); what %systemd_preun does.
if [ "$1" -eq 0 ] && [ -x /usr/bin/systemctl ]; then
    /usr/bin/systemctl --no-reload disable --now pam-totp-agent.socket pam-totp-agent.service >/dev/null 2>&1 || :
fi
