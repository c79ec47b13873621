# Shares of the agent's CPU samples by what they were doing, from `perf script` output
# (BENCHMARKS.md, "Where the time goes"): each sample counts once, in the first bucket whose
# pattern its call stack matches, in the order below. Usage:
#   perf script -i perf.data --comm worker,pam-totp-agent | awk -f docs/bench/perf-buckets.awk | sort -rn
BEGIN{RS=""}
{
  n++
  b="other"
  if (/__x64_sys_f(data)?sync/) b="fsync"
  else if (/__x64_sys_pwrite64/) b="pwrite (WAL)"
  else if (/__x64_sys_pread64/) b="pread"
  else if (/__x64_sys_fcntl/) b="fcntl (SQLite locks)"
  else if (/__x64_sys_futex/) {
    # The group commit's sleeps and wake-ups: the writer's holder waking the callers whose
    # jobs it committed (and the next holder), and a caller going to sleep until then (its
    # park is inlined into the store's transact).
    if (/Batcher::combine|Batcher::wake_next|unpark/) b="futex: group commit, waking callers"
    else if (/Store>::transact|Batcher/) b="futex: group commit, a caller going to sleep"
    else b="futex: other"
  }
  else if (/__x64_sys_recvfrom/) b="recv request"
  else if (/__x64_sys_sendto/) b="send reply"
  else if (/__x64_sys_accept4/) b="accept"
  else if (/__x64_sys_epoll/) b="epoll"
  else if (/__x64_sys_close/) b="close"
  else if (/__x64_sys_write|ksys_write/) b="write (log line)"
  else if (/__x64_sys_getsockopt/) b="getsockopt (peer)"
  else if (/profile_account/) b="profile_account (user)"
  else if (/sqlite3/) b="sqlite (user)"
  else if (/serde_json/) b="serde_json"
  else if (/StderrLogger|log_attempt/) b="log formatting"
  else if (/malloc|free|_int_/) b="malloc/free"
  else if (/entry_SYSCALL|do_syscall/) b="other syscalls"
  else if (/asm_sysvec|irq|schedule/) b="interrupts/scheduling"
  c[b]++
}
END { for (k in c) printf "%6.1f%%  %s\n", 100*c[k]/n, k; printf "samples %d\n", n }
