;;; op-agent's warm runner for Guile (scheme): started before the snapshot is taken, it loads
;;; the modules programs commonly use, then waits on fd 3 for one program to run.
;;;
;;; Started as `guile-3.0 --no-auto-compile -l /usr/lib/op/warm/guile.scm -s main.scm`: guile
;;; loads this file first (-l), and then the script (-s) exactly as `guile-3.0
;;; --no-auto-compile -s main.scm args...` does. This file's load is the wait: when the request
;;; comes it sets the program's directory, environment and command line and returns, and guile
;;; goes on to load main.scm itself, in the (guile-user) module, with guile's own error reports,
;;; backtraces and exit status; no frame of the runner is under the program.
;;;
;;; Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
;;; writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"};
;;; the runner becomes that program. A line with "prime": true is run in a module of its own,
;;; its output discarded and the runner's directory, environment, command line and random state
;;; put back, then "ready\n" again.
;;;
;;; Random state: guile seeds `random`'s default state the same way in every process, so a cold
;;; guile's (random n) gives the same numbers on every run; the program gets a copy of the state
;;; the runner started with, as a cold guile would have it. (random-state-from-platform) reads
;;; the clone's own kernel entropy.
(define-module (op warm)
  #:use-module (ice-9 rdelim)
  ;; What programs commonly use, loaded (not imported by the program's module): a program's
  ;; use-modules finds them loaded instead of loading them under emulation.
  #:use-module (ice-9 format)
  #:use-module (ice-9 textual-ports)
  #:use-module (ice-9 match)
  #:use-module (ice-9 regex)
  #:use-module (ice-9 pretty-print)
  #:use-module (srfi srfi-1)
  #:use-module (srfi srfi-9)
  #:use-module (srfi srfi-11)
  #:use-module (srfi srfi-13)
  #:use-module (srfi srfi-43))

;; The script guile was told to run after this file (-s main.scm); a request whose file has
;; another name, or that sets what guile reads as it starts, gets a fresh guile.
(define script (let ((args (program-arguments)))
                 (if (pair? args) (car args) "main.scm")))
(define start-env (environ))
(define start-random (copy-random-state *random-state*))
(define read-at-start "^(GUILE_.*|LANG|LANGUAGE|LC_.*|LD_.*)=")

(define ctl (fdopen 3 "r+"))
(set-port-encoding! ctl "UTF-8")

;;; JSON as op-agent writes it (jansson, compact): objects become alists, arrays lists.
(define (json-parse text)
  (define n (string-length text))
  (define i 0)
  (define (bad) (error "op runner: not a request line:" text))
  (define (peek) (if (< i n) (string-ref text i) #\nul))
  (define (next!) (let ((c (peek))) (when (>= i n) (bad)) (set! i (1+ i)) c))
  (define (skip-ws!)
    (while (memv (peek) '(#\space #\tab #\newline #\return)) (set! i (1+ i))))
  (define (expect! c) (skip-ws!) (unless (eqv? (next!) c) (bad)))
  (define (hex4!)
    (when (> (+ i 4) n) (bad))
    (let ((v (string->number (substring text i (+ i 4)) 16)))
      (unless v (bad))
      (set! i (+ i 4))
      v))
  (define (string!)
    (expect! #\")
    (let loop ((acc '()))
      (let ((c (next!)))
        (case c
          ((#\") (list->string (reverse acc)))
          ((#\\)
           (let ((e (next!)))
             (case e
               ((#\n) (loop (cons #\newline acc)))
               ((#\t) (loop (cons #\tab acc)))
               ((#\r) (loop (cons #\return acc)))
               ((#\b) (loop (cons #\backspace acc)))
               ((#\f) (loop (cons #\page acc)))
               ((#\u)
                (let ((u (hex4!)))
                  (if (and (<= #xd800 u #xdbff) (eqv? (peek) #\\))
                      (begin
                        (set! i (+ i 2))
                        (let ((lo (hex4!)))
                          (loop (cons (integer->char (+ #x10000 (* (- u #xd800) #x400)
                                                        (- lo #xdc00)))
                                      acc))))
                      (loop (cons (integer->char u) acc)))))
               (else (loop (cons e acc))))))
          (else (loop (cons c acc)))))))
  (define (items! close item)
    (skip-ws!)
    (if (eqv? (peek) close)
        (begin (next!) '())
        (let loop ((acc (list (item))))
          (skip-ws!)
          (let ((c (next!)))
            (cond ((eqv? c #\,) (loop (cons (item) acc)))
                  ((eqv? c close) (reverse acc))
                  (else (bad)))))))
  (define (literal! word v)
    (unless (string-prefix? word (substring text i)) (bad))
    (set! i (+ i (string-length word)))
    v)
  (define (value!)
    (skip-ws!)
    (case (peek)
      ((#\{) (next!) (items! #\} (lambda ()
                                   (let ((k (string!)))
                                     (expect! #\:)
                                     (cons k (value!))))))
      ((#\[) (next!) (items! #\] value!))
      ((#\") (string!))
      ((#\t) (literal! "true" #t))
      ((#\f) (literal! "false" #f))
      ((#\n) (literal! "null" #nil))
      (else
       (let ((start i))
         (while (memv (peek) (string->list "+-.0123456789eE")) (set! i (1+ i)))
         (or (string->number (substring text start i)) (bad))))))
  (value!))

(define (say-ready)
  (display "ready\n" ctl)
  (force-output ctl))

(define (read-request)
  (let ((line (read-line ctl)))
    (when (eof-object? line)
      (primitive-exit 70))
    (json-parse line)))

(define (env-list env)
  (map (lambda (kv) (string-append (car kv) "=" (cdr kv))) env))

;; What guile reads as it starts differs from the runner's: the program needs a guile of its own.
(define (fresh-guile? file env)
  (let ((changed (lset-xor string=?
                           (filter (lambda (s) (string-match read-at-start s)) start-env)
                           (filter (lambda (s) (string-match read-at-start s)) env))))
    (or (pair? changed) (not (string=? (basename file) script)))))

(define (set-program! req)
  (let ((file (assoc-ref req "file")))
    (chdir (assoc-ref req "cwd"))
    (environ (env-list (assoc-ref req "env")))
    (set-program-arguments (cons (basename file) (assoc-ref req "argv")))
    (set! *random-state* (copy-random-state start-random))))

;; A program of op-agent's, run the way a user's is loaded, in a module of its own, its output
;; discarded: this warms the emulator's translation of guile's reader, evaluator and the
;; modules the program uses. The runner's state is put back.
(define (prime! req)
  (let ((cwd (getcwd))
        (env (environ))
        (args (program-arguments))
        (void (%make-void-port "w")))
    (dynamic-wind
      (lambda () #t)
      (lambda ()
        (set-program! req)
        (with-output-to-port void
          (lambda ()
            (with-error-to-port void
              (lambda ()
                (catch #t
                  (lambda ()
                    (save-module-excursion
                     (lambda ()
                       (set-current-module (make-fresh-user-module))
                       (primitive-load (assoc-ref req "file")))))
                  (lambda _ #f)))))))
      (lambda ()
        (chdir cwd)
        (environ env)
        (set-program-arguments args)
        (set! *random-state* (copy-random-state start-random))))))

;; The request's program: guile loads it once this file's load returns. A program that needs a
;; guile of its own gets one in this process (exec), as a cold run would start it.
(define (become! req)
  (let ((file (assoc-ref req "file"))
        (env (env-list (assoc-ref req "env"))))
    (close-port ctl)
    (when (fresh-guile? file env)
      (chdir (assoc-ref req "cwd"))
      (environ env)
      (apply execlp "guile-3.0" "guile-3.0" "--no-auto-compile" "-s" (basename file)
             (assoc-ref req "argv")))
    (set-program! req)))

(let loop ()
  (gc)
  (say-ready)
  (let ((req (read-request)))
    (if (assoc-ref req "prime")
        (begin (prime! req) (loop))
        (become! req))))
