;; op-agent's warm runner for Racket: started before the snapshot is taken, it loads racket/base
;; and the libraries programs commonly use, then waits on fd 3 for one program to run.
;;
;; Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
;; writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"}; the
;; runner becomes that program, run as `racket main.rkt args...` runs it: in a namespace of its
;; own (the preloaded modules attached, so their code and instances are shared), its
;; configure-runtime submodule first, then the module, then its main submodule; the same
;; command-line arguments, run-file (the runner is started with `-N main.rkt`), directory,
;; environment, error report and exit status. A line with "prime": true is run the same way in a
;; namespace thrown away after it, its output discarded by the agent, then "ready\n" again.
;;
;; Written as a plain `module` form (no #lang line): the runner has no configure-runtime of its
;; own, so the program's is the only one that runs, as with a cold `racket`.
(module racket racket/base
  (require (only-in racket) ; instantiated: racket/list, racket/string, racket/match, ...
           racket/random
           json
           racket/runtime-config ; what a program's configure-runtime submodule requires
           ffi/unsafe/port)

  ;; Attached to each program's namespace: with them, what they depend on (at every phase
  ;; instantiated here), and the readers of `#lang racket/base` and `#lang racket`.
  (define preloaded
    '(racket racket/base racket/random json racket/runtime-config
      (submod racket/base reader) (submod racket reader)))

  ;; Expand a module of each language once: the modules their macros run on get instantiated
  ;; at phase 1, and their readers loaded, in this namespace; a program's namespace then shares
  ;; them instead of instantiating them again (under emulation, seconds per request).
  (define (warm-up!)
    (namespace-require ''#%kernel)
    (for ([text (in-list '("#lang racket/base\n(define (f x) (list x))\n(f 1)\n"
                           "#lang racket\n(define (f x) (list x))\n(f 1)\n"))])
      (define in (open-input-string text))
      (port-count-lines! in)
      (parameterize ([read-accept-reader #t]
                     [read-accept-lang #t])
        (expand (read-syntax 'warm-up in)))))

  (define-values (ctl-in ctl-out) (unsafe-file-descriptor->port 3 'op-agent '(read write)))

  (define (say-ready)
    (write-bytes #"ready\n" ctl-out)
    (flush-output ctl-out))

  (define (read-request)
    (define line (read-bytes-line ctl-in 'linefeed))
    (when (eof-object? line)
      (exit 70))
    (bytes->jsexpr line))

  (define (program-namespace)
    (define ns (make-empty-namespace))
    (for ([m (in-list preloaded)])
      (namespace-attach-module (current-namespace) m ns))
    ns)

  (define (set-environment! env)
    (define vars (current-environment-variables))
    (for ([name (in-list (environment-variables-names vars))])
      (environment-variables-set! vars name #f))
    (for ([(k v) (in-hash env)])
      (environment-variables-set! vars (string->bytes/utf-8 (symbol->string k))
                                  (string->bytes/utf-8 v))))

  ;; What `racket file` does with its file (racket's launcher): the configure-runtime submodule
  ;; (or the language's runtime-config), the module required into the namespace, then its main
  ;; submodule when it has one. Compiled from a plain datum, so that its procedures have no name
  ;; and no source location: the context of an error in the program lists the program's frames
  ;; only, as with a cold racket.
  (define helper-namespace (make-base-namespace))
  (define run-program
    (parameterize ([current-namespace helper-namespace])
      (eval
       '(lambda (ns file main?)
          (current-namespace ns)
          ((lambda (m)
             (if main?
                 (begin
                   ((lambda (config-m)
                      (if (module-declared? config-m #t)
                          (dynamic-require config-m #f)
                          (void)))
                    (module-path-index-join '(submod "." configure-runtime) m))
                   ((lambda (info)
                      (if (and (vector? info) (= 3 (vector-length info)))
                          ((lambda (info-load)
                             ((lambda (infos)
                                (if (and (list? infos)
                                         (andmap (lambda (i)
                                                   (and (vector? i) (= 3 (vector-length i))))
                                                 infos))
                                    (for-each info-load infos)
                                    (raise-argument-error 'runtime-configure
                                                          "(listof (vector any any any))" infos)))
                              ((info-load info) 'configure-runtime '())))
                           (lambda (info)
                             ((dynamic-require (vector-ref info 0) (vector-ref info 1))
                              (vector-ref info 2))))
                          (void)))
                    (module->language-info m #t)))
                 (void))
             (namespace-require m)
             ((lambda (main-m)
                (if (module-declared? main-m #t)
                    (dynamic-require main-m #f)
                    (void)))
              (module-path-index-join '(submod "." main) m)))
           (module-path-index-join (list 'file file) #f))
          (if main?
              (begin
                ((executable-yield-handler) 0)
                (exit 0))
              (void))))))

  ;; A program of op-agent's, run the way a user's is: the request's steps on copies of what they
  ;; change (environment, random generator), then the program through the same `-e` expression,
  ;; evaluated as racket's launcher evaluates it (reading, expanding and compiling a top-level
  ;; form and a module, its configure-runtime and main submodules, the ports, the exit). This
  ;; warms the emulator's translation cache for the request's own paths. Nothing of it stays: its
  ;; namespace is dropped, and the parameters it ran under (those its configure-runtime sets
  ;; among them) are the runner's again.
  (define (prime req ns)
    (let/ec escape
      (parameterize ([current-namespace helper-namespace]
                     [current-command-line-arguments
                      (list->vector (hash-ref req 'argv))]
                     [current-directory (hash-ref req 'cwd)]
                     [current-directory-for-user (hash-ref req 'cwd)]
                     [current-environment-variables
                      (environment-variables-copy (current-environment-variables))]
                     [current-pseudo-random-generator (make-pseudo-random-generator)]
                     [print-as-expression (print-as-expression)]
                     [exit-handler (lambda (v) (escape (void)))]
                     [error-escape-handler (lambda () (escape (void)))])
        (with-handlers ([(lambda (e) #t) void])
          (set-environment! (hash-ref req 'env))
          (reseed!)
          (hand-over! ns (hash-ref req 'file))
          (call-with-continuation-prompt
           (lambda () (eval `(#%top-interaction . ,(read (open-input-string warm-run-expr)))))
           (default-continuation-prompt-tag)
           (lambda (proc) (proc))))))
    (flush-output (current-output-port))
    (flush-output (current-error-port)))

  ;; Every clone holds this process: the generator behind `random` (seeded as racket started,
  ;; before the snapshot) is seeded again from the clone's own entropy. crypto-random-bytes reads
  ;; /dev/urandom at each call, new generators seed themselves from the clock when made, and
  ;; temporary file names come from the clock.
  (define (reseed!)
    (define b (call-with-input-file* "/dev/urandom" (lambda (in) (read-bytes 48 in))))
    (define (word i limit)
      (modulo (integer-bytes->integer b #f #f (* 8 i) (* 8 (add1 i))) (add1 limit)))
    (define (nonzero l) (if (andmap zero? l) (cons 1 (cdr l)) l))
    (vector->pseudo-random-generator!
     (current-pseudo-random-generator)
     (list->vector (append (nonzero (for/list ([i 3]) (word i 4294967086)))
                           (nonzero (for/list ([i (in-range 3 6)]) (word i 4294944442)))))))

  ;; The program is run by the expression after this file on the runner's command line
  ;; (`-e "(op-warm-run)"`), evaluated by racket's launcher in the helper namespace once this
  ;; module's body has returned: as with `racket main.rkt`, the program runs in the main thread
  ;; with none of the runner's frames under it, and the launcher reports an error that escapes
  ;; it, makes the exit status 1, and exits.
  (define (run req ns)
    (close-input-port ctl-in)
    (close-output-port ctl-out)
    (current-directory (hash-ref req 'cwd))
    (current-directory-for-user (hash-ref req 'cwd))
    (set-environment! (hash-ref req 'env))
    (current-command-line-arguments (list->vector (hash-ref req 'argv)))
    (reseed!)
    (hand-over! ns (hash-ref req 'file))
    (current-namespace helper-namespace))

  ;; The expression the runner's command line evaluates after it (`-e`), and what it calls: an
  ;; abort to the launcher's prompt, which then runs the program.
  (define warm-run-expr "(op-warm-run)")
  (define (hand-over! ns file)
    (namespace-set-variable-value!
     'op-warm-run
     (lambda ()
       (abort-current-continuation (default-continuation-prompt-tag)
                                   (lambda () (run-program ns file #t))))
     #t helper-namespace))

  ;; The namespace of the request to come is made before "ready": attaching the preloaded
  ;; modules walks hundreds of module instances, work that need not wait for the program. A minor
  ;; collection then empties the nursery, so that a small program's allocation does not start one
  ;; (under emulation, tens to hundreds of ms, with the pages it writes copied into the clone).
  (warm-up!)
  (let loop ()
    (define ns (program-namespace))
    (collect-garbage 'minor)
    (say-ready)
    (define req (read-request))
    (cond
      [(hash-ref req 'prime #f)
       (prime req ns)
       (loop)]
      [else (run req ns)])))
