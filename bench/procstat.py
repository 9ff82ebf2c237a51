"""procstat: CPU time of processes from /proc/PID/stat, for the programs in bench/."""
import os


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command's closing parenthesis (state first)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """utime + stime of one process, in s (None once it is gone)."""
    try:
        st = stat_fields(pid)
    except OSError:
        return None
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
