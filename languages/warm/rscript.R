# op-agent's warm runner for R: started in each clone (its start seeds C's rand(), behind
# tempfile()'s names, which R code cannot seed again), it waits on fd 3 for one program and hands
# it to R's own read-eval-print loop, which reads it as `Rscript main.r` reads its file.
#
# Started as `Rscript -e 'source("/usr/lib/op/warm/rscript.R"); invisible('`. R writes the -e
# text to an unlinked file in TMPDIR and reads its console from that file; this runner is the
# source() call, and waits there. For the program it appends the program's text to that file:
# when source() returns, the loop reads on, finishes `invisible(` with the ")" the runner wrote
# first (R 4.2 ends the -e text with a NUL byte, which would end the input: the open call keeps
# the loop reading past it), and then reads the program line by line, exactly as it reads a
# script given with --file: syntax errors, errors ("Execution halted", status 1), warnings,
# quit(), stdin() (the rest of the program's text) and the end of the input are R's own.
#
# Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
# writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"}; the
# runner becomes that program. A line with "prime": true is run the same way, followed by a line
# that comes back here: the runner puts back its state, writes "ready\n" and waits again. R
# cannot open a socket by its fd (open("/proc/self/fd/3") fails for sockets): the line is read
# by `head -n 1` and "ready" written by `echo`, children of R that have fd 3.
local({
    ## R's startup adds these to the environment the agent starts the runner with (PATH, HOME,
    ## LANG, TMPDIR): the R shell script, /etc/R/Renviron, R itself.
    agent_env <- c("PATH", "HOME", "LANG", "TMPDIR")
    start_env <- unclass(Sys.getenv())
    added <- start_env[setdiff(names(start_env), agent_env)]
    start_home <- Sys.getenv("HOME")
    start_lang <- Sys.getenv("LANG")
    start_dir <- getwd()
    ## What R reads from the environment as it starts (besides what it adds): a request that sets
    ## one of these is run by a fresh Rscript.
    read_at_start <- "^(R_.*|LC_.*|LD_.*|LANGUAGE|VISUAL|TEXI2DVI|JAVA_HOME)$"
    exe <- commandArgs()[1L] # /usr/lib/R/bin/exec/R
    base_args <- base::commandArgs

    ## The file R reads its console from: the -e text's, unlinked.
    fds <- list.files("/proc/self/fd", full.names = TRUE)
    console <- fds[grepl("/Rscript[0-9a-f]+\\.[^/]+ \\(deleted\\)$", Sys.readlink(fds))]
    if (length(console) != 1L)
        stop("op runner: no console file of Rscript -e among ", paste(Sys.readlink(fds), collapse = " "))
    ## The first text appended closes the -e text's `invisible(`.
    first <- TRUE

    ## JSON, as op-agent writes it (jansson, compact): objects, arrays, strings, literals.
    json_parse <- function(text) {
        m <- gregexpr("\"(?:[^\"\\\\]|\\\\.)*\"|[][{}:,]|true|false|null|-?[0-9][0-9.eE+-]*",
                      text, perl = TRUE)
        toks <- regmatches(text, m)[[1L]]
        i <- 0L
        value <- function() {
            i <<- i + 1L
            t <- toks[i]
            switch(substr(t, 1L, 1L),
                   "{" = {
                       keys <- character()
                       vals <- list()
                       if (toks[i + 1L] == "}") {
                           i <<- i + 1L
                       } else repeat {
                           i <<- i + 2L # the key, ":"
                           keys <- c(keys, unescape(toks[i - 1L]))
                           vals[length(keys)] <- list(value())
                           i <<- i + 1L
                           if (toks[i] == "}") break
                       }
                       names(vals) <- keys
                       vals
                   },
                   "[" = {
                       vals <- list()
                       if (toks[i + 1L] == "]") {
                           i <<- i + 1L
                       } else repeat {
                           vals[length(vals) + 1L] <- list(value())
                           i <<- i + 1L
                           if (toks[i] == "]") break
                       }
                       vals
                   },
                   "\"" = unescape(t),
                   "t" = TRUE,
                   "f" = FALSE,
                   "n" = NULL,
                   as.numeric(t))
        }
        value()
    }
    unescape <- function(t) {
        s <- substr(t, 2L, nchar(t) - 1L)
        if (!grepl("\\", s, fixed = TRUE))
            return(s)
        m <- gregexpr("\\\\u[dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\\\u[0-9a-fA-F]{4}|\\\\.",
                      s, perl = TRUE)
        regmatches(s, m) <- list(vapply(regmatches(s, m)[[1L]], function(e) {
            c1 <- substr(e, 2L, 2L)
            if (c1 != "u")
                return(switch(c1, b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", c1))
            cp <- strtoi(substr(e, 3L, 6L), 16L)
            if (nchar(e) == 12L)
                cp <- 65536L + (cp - 55296L) * 1024L + strtoi(substr(e, 9L, 12L), 16L) - 56320L
            intToUtf8(cp)
        }, ""))
        s
    }

    read_request <- function() {
        con <- pipe("exec head -n 1 <&3", "r")
        line <- readLines(con, n = 1L, warn = FALSE, encoding = "UTF-8")
        close(con)
        if (!length(line))
            quit(save = "no", status = 70L, runLast = FALSE)
        json_parse(line)
    }
    ready <- function() {
        flush(stdout())
        flush(stderr())
        if (system("echo ready >&3") != 0L)
            quit(save = "no", status = 70L, runLast = FALSE)
    }

    ## The environment `Rscript main.r` would have with the request's: the request's, and what
    ## R's start-up adds, as it would add it there.
    program_env <- function(env) {
        want <- added
        home <- if (is.null(env$HOME)) start_home else env$HOME
        if (!is.na(want["R_LIBS_USER"]) && startsWith(want[["R_LIBS_USER"]], start_home))
            want[["R_LIBS_USER"]] <- paste0(home, substring(want[["R_LIBS_USER"]], nchar(start_home) + 1L))
        if (length(env))
            want[names(env)] <- unlist(env, use.names = FALSE)
        if ("PWD" %in% names(added))
            want[["PWD"]] <- getwd()
        if ("R_SESSION_TMPDIR" %in% names(added))
            want[["R_SESSION_TMPDIR"]] <- tempdir()
        want
    }
    set_env <- function(want) {
        now <- names(Sys.getenv())
        gone <- setdiff(now, names(want))
        if (length(gone))
            Sys.unsetenv(gone)
        do.call(Sys.setenv, as.list(want))
    }
    ## Settings R takes as it starts, which a runner cannot take again: a fresh Rscript.
    needs_fresh_r <- function(req, want) {
        names <- names(req$env)
        if (any(grepl(read_at_start, names)) || any(names %in% names(added)))
            return(TRUE)
        if (!identical(unname(want["LANG"]), start_lang))
            return(TRUE)
        dirs <- c(req$cwd, want[["HOME"]])
        any(file.exists(file.path(dirs, ".Rprofile"), file.path(dirs, ".Renviron"))) ||
            (!is.na(want["R_LIBS_USER"]) && dir.exists(want[["R_LIBS_USER"]]))
    }
    run_fresh <- function(req, file) {
        env <- unlist(req$env)
        args <- unlist(req$argv)
        cmd <- paste("exec env -i", paste(shQuote(paste0(names(env), "=", env)), collapse = " "),
                     "Rscript", shQuote(file), paste(shQuote(args), collapse = " "))
        status <- system(cmd)
        quit(save = "no", status = status, runLast = FALSE)
    }

    ## commandArgs() as under `Rscript main.r args...`: R's own function, its vector given.
    set_args <- function(file, argv) {
        args <- c(exe, "--no-echo", "--no-restore", paste0("--file=", file))
        if (length(argv))
            args <- c(args, "--args", unlist(argv))
        f <- base_args
        body(f)[[2L]][[3L]] <- args
        unlockBinding("commandArgs", baseenv())
        assign("commandArgs", f, envir = baseenv())
        lockBinding("commandArgs", baseenv())
    }

    ## R's session temporary directory, made in TMPDIR as R starts, is made again in the
    ## program's TMPDIR (mkdtemp, when it is gone): before the wait, in the run directory the
    ## agent's TMPDIR names for a program on this runner, and again if the request names another.
    new_tempdir <- function() {
        unlink(tempdir(), recursive = TRUE)
        invisible(tempdir(check = TRUE))
    }
    tempdir_in <- function(dir) {
        if (identical(dirname(tempdir()), dir))
            return(invisible())
        Sys.setenv(TMPDIR = dir)
        new_tempdir()
    }

    ## R seeds its generator at first use from the time and the pid, which every clone of a
    ## snapshot shares; the seed comes from the clone's kernel instead (a 32-bit seed, as R's).
    reseed <- function() {
        con <- file("/dev/urandom", "rb", raw = TRUE)
        seed <- readBin(con, "integer", 1L, size = 4L)
        close(con)
        if (is.na(seed))
            seed <- 0L
        set.seed(seed)
    }

    append_console <- function(bytes) {
        if (first)
            bytes <- c(charToRaw(")\n"), bytes)
        first <<- FALSE
        con <- file(console, "ab")
        writeBin(bytes, con)
        close(con)
    }

    ## Put the runner back as it was after a prime: the program's objects and seed are gone, the
    ## directory is the runner's. (A warning would stay in base's last.warning, which cannot be
    ## removed: the catalogue's prime program makes none.)
    after_prime <- function() {
        rm(list = ls(globalenv(), all.names = TRUE), envir = globalenv())
        setwd(start_dir)
    }

    step <- function() {
        tempdir_in(start_dir)
        ready()
        req <- read_request()
        setwd(req$cwd)
        file <- req$file
        if (dirname(file) == req$cwd)
            file <- basename(file)
        want <- program_env(req$env)
        if (!isTRUE(req$prime) && needs_fresh_r(req, want))
            run_fresh(req, file)
        set_env(want)
        tempdir_in(want[["TMPDIR"]])
        set_args(file, req$argv)
        reseed()
        text <- readBin(req$file, "raw", file.size(req$file))
        if (isTRUE(req$prime)) {
            append_console(c(text, charToRaw("\n.op_runner()\n")))
        } else {
            rm(".op_runner", envir = globalenv())
            append_console(text)
        }
        invisible()
    }
    ## The line that brings a prime's loop back here; not there when the program runs.
    resume <- function() {
        after_prime()
        new_tempdir()
        assign(".op_runner", resume, envir = globalenv())
        step()
    }
    assign(".op_runner", resume, envir = globalenv())
    step()
})
