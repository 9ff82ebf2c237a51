# op-agent's warm runner for Raku: started in each clone (MoarVM draws its hash secrets from the
# kernel as it starts and has no way to draw them again), it loads the CORE setting, the compiler,
# NativeCall and this module (precompiled when the image is built), then waits on fd 3 for one
# program and runs it through the compiler's own command_eval, as `raku main.raku args...` does.
#
# Started as
#   raku -e 'my %e; BEGIN { %e = %*ENV; %*ENV<HOME>:delete }; use lib "/usr/lib/op/warm/raku";
#            use OpWarmRaku; op-warm-run(%e)'
# HOME is out of %*ENV as the module and NativeCall load: the repository chain they are loaded
# through then has no ~/.raku, which raku would make in the runner's HOME (the program gets a
# chain of its own, from its HOME). %e is the environment the runner started with.
#
# Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
# writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"}; the
# runner becomes that program. A line with "prime": true is run the same way (the agent drops its
# output), then the runner puts back what the program set up and writes "ready\n" again.
#
# The program is compiled and run by Perl6::Compiler.command_eval, which rakudo's main calls
# for `raku main.raku args...`: @*ARGS and $*PROGRAM-NAME come from it, an uncaught exception is
# reported by the compiler's handle-exception (message, backtrace of the program's frames, exit
# status 1), a syntax error as ===SORRY!===, and `sub MAIN` is called by the program's mainline.
# Then the END phasers run (&THE_END) and the process exits 0, as rakudo's main does.
unit module OpWarmRaku;
use nqp;
use NativeCall;

my sub op-read(int32, Buf, size_t --> ssize_t) is native is symbol('read') {*}
my sub op-write(int32, Blob, size_t --> ssize_t) is native is symbol('write') {*}
my sub op-close(int32 --> int32) is native is symbol('close') {*}
my sub op-setenv(Str, Str, int32 --> int32) is native is symbol('setenv') {*}
my sub op-clearenv(--> int32) is native is symbol('clearenv') {*}
my sub op-execvp(Str, CArray[Str] --> int32) is native is symbol('execvp') {*}

# A request that sets what raku reads only as it starts gets a fresh raku: MoarVM reads MVM_*
# and LD_*, rakudo RAKUDO_*, RAKU_*, PERL6_* and NQP_*, the module paths RAKULIB and PERL6LIB.
my constant READ-AT-START = /^ [ 'RAKU' | 'PERL6' | 'MVM_' | 'NQP_' | 'LD_' ] /;

# PROCESS:: as a cold raku has it when its program starts: what the runner's start made, less the
# module repository chain ($*REPO, made anew from the program's HOME at its first `use`) and
# the module loader's debug flag. What a run adds (@*ARGS, $*PROGRAM-NAME, $*ARGFILES, $*TMPDIR,
# ... made at first use) is taken out again before the next, as are the packages a prime's
# program adds to GLOBAL::.
my @cold-process;
my @start-global;
# The END phasers a program's mainline registers (the runner has none): a prime's are dropped.
my $end-phasers;

my sub say-ready() {
    my $b = "ready\n".encode;
    op-write(3, $b, $b.bytes) == $b.bytes or nqp::exit(70);
}

my sub read-request() {
    my $line = Buf.new;
    my $chunk = Buf.new;
    until $line.elems && $line[*-1] == 10 {
        $chunk.reallocate(65536);
        my $n = op-read(3, $chunk, 65536);
        nqp::exit(70) if $n <= 0;
        $line.append($chunk.subbuf(0, $n));
    }
    Rakudo::Internals::JSON.from-json($line.decode('utf8'))
}

my sub needs-fresh-raku(%env) {
    so %env.keys.first(READ-AT-START)
}

# The request's environment in the process (what NativeCall code and a subprocess's C library
# see) and in %*ENV.
my sub set-env(%env) {
    op-clearenv();
    op-setenv(.key, .value, 1) for %env;
    %*ENV = %env;
}

# The directory, and $*CWD as raku makes it as it starts (an IO::Path that is its own CWD).
my sub set-cwd($dir) {
    nqp::chdir($dir);
    my $cwd = nqp::cwd();
    PROCESS::<$CWD> = IO::Path.new($cwd, :CWD($cwd));
}

# `raku main.raku args...` itself, in this process: the request's environment, directory, stdio.
my sub exec-fresh-raku(%req, $file) {
    op-close(3);
    set-env(%req<env>);
    set-cwd(%req<cwd>);
    my $argv = CArray[Str].new('raku', $file, |%req<argv>, Str);
    op-execvp('raku', $argv);
    note "raku: could not start raku";
    nqp::exit(127);
}

# The clone's own numbers for rand, pick, roll and srand-less shuffles: MoarVM seeds its
# generator from the clock and the pid as it starts, which clones started alike may share.
my sub reseed() {
    my $fh = '/dev/urandom'.IO.open(:bin);
    my $seed = $fh.read(8).read-int64(0);
    $fh.close;
    srand($seed);
}

my sub run-program(%req, $file) {
    PROCESS::{$_}:delete for (PROCESS::.keys (-) @cold-process).keys;
    # raku makes it at first use, relative to the directory it started in, which is the
    # runner's: made here, relative to the program's (it cannot be registered again).
    PROCESS::<$PROGRAM> := IO::Path.new(:CWD(nqp::cwd()), $file);
    my $comp := nqp::getcomp('Raku');
    $comp.command_eval($file, |%req<argv>, :encoding<utf8>, :transcode('ascii iso-8859-1'));
}

my sub after-prime($cwd, %start-env) {
    $*OUT.flush;
    $*ERR.flush;
    GLOBAL::{$_}:delete for (GLOBAL::.keys (-) @start-global).keys;
    nqp::setelems($end-phasers, 0);
    set-env(%start-env);
    set-cwd($cwd);
}

sub op-warm-run(%start-env) is export {
    @cold-process = PROCESS::.keys.grep(* ne '$REPO' | '$RAKUDO_MODULE_DEBUG');
    @start-global = GLOBAL::.keys;
    $end-phasers := nqp::gethllsym('Raku', '@END_PHASERS');
    my $start-dir = $*CWD.Str;
    loop {
        say-ready();
        my %req = read-request();
        # The file as the cold command names it: relative to its directory.
        my $file = %req<file>.IO.parent.Str eq %req<cwd> ?? %req<file>.IO.basename !! %req<file>;
        if %req<prime> {
            # What a request checks and calls before its program, run here once, so that the
            # request does not translate it (or set up the native call) for the first time:
            # close(-1) closes nothing.
            needs-fresh-raku(%req<env>);
            op-close(-1);
        }
        else {
            exec-fresh-raku(%req, $file) if needs-fresh-raku(%req<env>);
            op-close(3);
        }
        set-env(%req<env>);
        set-cwd(%req<cwd>);
        reseed();
        run-program(%req, $file);
        last unless %req<prime>;
        after-prime($start-dir, %start-env);
    }
    if nqp::gethllsym('Raku', '&THE_END') -> $end {
        $end();
    }
    nqp::exit(0);
}
