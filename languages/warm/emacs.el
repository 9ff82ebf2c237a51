;;; emacs.el --- op-agent's warm runner for Emacs Lisp  -*- lexical-binding: t -*-

;; Started before the snapshot is taken as `emacs --batch --no-site-file -l
;; /usr/lib/op/warm/emacs.el`: emacs has loaded its dump and set itself up, and this file's
;; load is the wait. When the request comes, it rewrites the command line emacs is working
;; through into the one `emacs --batch --no-site-file --script main.el args...` gives it
;; (`-scriptload main.el args...`) and returns; emacs's own command-line loop then loads
;; main.el as the script, with emacs's own error report, backtrace and exit status, and no
;; frame of the runner under it.
;;
;; Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
;; writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"};
;; the runner becomes that program. A line with "prime": true is loaded by the runner itself,
;; its errors caught, what it printed flushed (the agent drops it), then "ready\n" again. Emacs Lisp cannot
;; open a socket by its fd: "ready" is written and the line read by a shell, a child of emacs
;; that has fd 3.
;;
;; Random state: emacs seeds `random' from the system's entropy as it starts, and every clone
;; holds this emacs: the runner seeds it again, `(random t)', from the clone's own entropy
;; (the agent applies it before the hand-off).

(defconst op-warm--read-at-start-re
  "\\`\\(EMACS[^=]*\\|LANG\\|LANGUAGE\\|LC_[^=]*\\|LD_[^=]*\\|TZ\\|TERM\\)="
  "What emacs reads from the environment as it starts: a request that changes one of these
runs in an emacs of its own.")

(defconst op-warm--script "main.el"
  "The file name `--script' is given in the cold command.")

(defun op-warm--exchange ()
  "Write \"ready\" to fd 3, then read one line from it; its JSON, as an alist."
  (let ((line (with-temp-buffer
                (let ((coding-system-for-read 'utf-8))
                  (call-process "/bin/sh" nil t nil "-c" "echo ready >&3; exec head -n 1 <&3"))
                (buffer-string))))
    (when (equal line "")
      (kill-emacs 70))
    (json-parse-string line :object-type 'alist :array-type 'list)))

(defun op-warm--environment (req)
  "The request's environment as `process-environment' holds it: NAME=VALUE strings."
  (mapcar (lambda (kv) (concat (symbol-name (car kv)) "=" (cdr kv)))
          (alist-get 'env req)))

(defun op-warm--read-at-start (env)
  "The entries of ENV (NAME=VALUE strings) that emacs reads as it starts, sorted."
  (let (found)
    (dolist (s env)
      (when (string-match-p op-warm--read-at-start-re s)
        (push s found)))
    (sort found #'string<)))

(defun op-warm--fresh-p (req env)
  "Whether the request needs an emacs of its own: another file than the one `--script' names
in the cold command, or a different value of something emacs reads as it starts."
  (or (not (equal (file-name-nondirectory (alist-get 'file req)) op-warm--script))
      (not (equal (op-warm--read-at-start initial-environment)
                  (op-warm--read-at-start env)))))

(defun op-warm--run-fresh (req env)
  "Run the request's program in an emacs of its own, on this process's standard streams, and
exit with its status."
  (let* ((default-directory (file-name-as-directory (alist-get 'cwd req)))
         (process-environment env)
         (status (apply #'call-process "emacs" "/dev/stdin"
                        '((:file "/dev/stdout") "/dev/stderr") nil
                        "--batch" "--no-site-file" "--script"
                        (file-name-nondirectory (alist-get 'file req))
                        (alist-get 'argv req))))
    (kill-emacs (if (integerp status) status 255))))

(defun op-warm--prime (req)
  "Load the prime program as a script is loaded, its errors caught; the runner's command line,
directory and environment are left as they were. What it printed is flushed before the
runner says \"ready\" (the agent drops it): emacs buffers its standard output, and a byte left
in that buffer would come out in the request's output."
  (let ((default-directory (file-name-as-directory (alist-get 'cwd req)))
        (process-environment (op-warm--environment req))
        (command-line-args-left (alist-get 'argv req)))
    (condition-case nil
        (load (alist-get 'file req) nil t t)
      (error nil))
    ;; Flushes standard output, and marks it written: the next message would start with a
    ;; newline. The empty message takes that newline here, into the prime's output.
    (send-string-to-terminal "")
    (message nil)))

(defun op-warm--become (req)
  "Make the request's program the script emacs loads next."
  (let ((env (op-warm--environment req)))
    (when (op-warm--fresh-p req env)
      (op-warm--run-fresh req env))
    (setq process-environment env
          initial-environment (copy-sequence env))
    ;; As emacs sets it when it starts: "~/" for a directory under HOME, the abbreviation
    ;; of the new HOME (emacs caches the old one).
    (setq abbreviated-home-dir nil
          default-directory (abbreviate-file-name
                             (file-name-as-directory (alist-get 'cwd req)))
          command-line-default-directory default-directory)
    (random t)
    ;; The list emacs's command-line loop was called with (its frame shows it in a backtrace)
    ;; and the arguments it has left: those of `--script main.el args...'.
    (let ((args (append (list "-scriptload" op-warm--script) (alist-get 'argv req)))
          (cell (cdr command-line-args)))
      (setcar cell (car args))
      (setcdr cell (cdr args))
      (setq command-line-args-left (copy-sequence args)))))

(let ((req (progn (garbage-collect) (op-warm--exchange))))
  (while (eq (alist-get 'prime req) t)
    (op-warm--prime req)
    (garbage-collect)
    (setq req (op-warm--exchange)))
  (op-warm--become req))

;;; emacs.el ends here
