"""Clock discipline: the kernel view (adjtimex) now; linuxptp and the clock guard with the supervisor."""
