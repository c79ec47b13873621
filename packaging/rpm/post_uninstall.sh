# pam-totp %postun ($1: 0 on removal, 1 on upgrade); what %systemd_postun_with_restart does.
# The database in /var/lib/pam-totp is kept on removal, as RPM packages keep state.
if [ -d /run/systemd/system ]; then
    /usr/bin/systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        /usr/bin/systemctl try-restart pam-totp-agent.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rmdir /etc/pam-totp 2>/dev/null || :
fi
