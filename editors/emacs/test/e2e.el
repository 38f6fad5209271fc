;;; e2e.el --- the end-to-end test of hunkwise-eglot.el in batch Emacs  -*- lexical-binding: t; -*-

;; emacs --batch -Q -l editors/emacs/test/e2e.el, with $HUNKWISE_EMACS_TEST a JSON
;; object (see tests/test_editor_emacs.py): the interpreter, bundle, file, change,
;; instruction and the `out' file this writes its result to as JSON.
;;
;; Loads hunkwise-eglot.el from this checkout the way a user's init file does, opens a
;; file of a git repository, runs M-x eglot, edits the file, waits for hunkwise's Flymake
;; diagnostics, runs M-x hunkwise-refine and picks "Apply suggested refinement" in its
;; menu, runs `hunkwise-edit' on a range and `hunkwise-status'; every edit Eglot applies
;; is recorded with the buffer text before and after it.  Every wait has a deadline and
;; a watchdog timer quits Emacs, so a hang fails.
;;
;; Batch Emacs is never idle, so it runs no idle timers: `e2e-idle' does what they do
;; in an interactive Emacs after a command (Eglot's didChange timer, Flymake's start).
;; The prompts an interactive user answers (Eglot's confirmation of a server edit, the
;; code-action menu) are answered here, and recorded.

;;; Code:

(require 'cl-lib)
(require 'json)
(require 'subr-x)

(defvar e2e-config
  (json-parse-string (or (getenv "HUNKWISE_EMACS_TEST")
                         (error "e2e: $HUNKWISE_EMACS_TEST is not set"))
                     :object-type 'plist :array-type 'list))

(defvar e2e-result (make-hash-table :test #'equal)
  "What the test reads: steps, edits, prompts, the diagnostic, statuses, error.")

(defun e2e-get (key) (plist-get e2e-config key))

(defun e2e-put (key value) (puthash key value e2e-result))

(defun e2e-push (key value)
  (puthash key (vconcat (gethash key e2e-result []) (vector value)) e2e-result))

(defun e2e-write ()
  (let ((coding-system-for-write 'utf-8-unix))
    (with-temp-file (e2e-get :out)
      (insert (json-serialize e2e-result :null-object :null :false-object :json-false)))))

(defun e2e-step (name)
  (e2e-push "steps" name)
  (message "e2e: %s" name)
  (e2e-write))

(defun e2e-text ()
  (save-restriction (widen) (buffer-substring-no-properties (point-min) (point-max))))

(defun e2e-wait (what predicate seconds)
  "Wait until PREDICATE is non-nil, at most SECONDS; then fail saying WHAT."
  (let ((deadline (+ (float-time) seconds)) value)
    (while (not (setq value (funcall predicate)))
      (when (> (float-time) deadline)
        (error "timed out after %s s waiting for %s" seconds what))
      (accept-process-output nil 0.05))
    value))

;;; Eglot, from Debian's elpa-eglot on Emacs 28 (-Q leaves site-lisp off the load-path)

(require 'package)
(unless (locate-library "eglot")
  (setq package-user-dir (expand-file-name "elpa" (e2e-get :state))
        package-directory-list (e2e-get :elpa_dirs))
  (package-initialize))

(add-to-list 'load-path (file-name-directory
                         (directory-file-name
                          (file-name-directory (or load-file-name buffer-file-name)))))
(require 'hunkwise-eglot)
(require 'flymake)

;; The user's init file (editors/emacs/README.md, Install).
(setq hunkwise-server-command (list (e2e-get :python) "-m" "server")
      hunkwise-settings (list :bundle (e2e-get :bundle) :device "cpu"
                              ;; an untrained bundle's scores are arbitrary: flag every hunk
                              :threshold 0 :diffBase "HEAD" :debounceMs 50 :maxNewTokens 8))

(e2e-put "emacs_version" emacs-version)
(e2e-put "eglot_library" (locate-library "eglot"))
(e2e-put "eglot_confirm" (format "%s" eglot-confirm-server-initiated-edits))

;;; What an interactive session would show or ask

(defun e2e-yes (prompt &rest _)
  "Answer yes to PROMPT, as the user does; record it."
  (e2e-push "prompts" (substring-no-properties prompt))
  t)
(advice-add 'y-or-n-p :override #'e2e-yes)
(advice-add 'yes-or-no-p :override #'e2e-yes)

(defun e2e-record-edit (apply wedit &rest args)
  "Around `eglot--apply-workspace-edit': record WEDIT and the text around it."
  (let* ((buffer (current-buffer))
         (file (with-current-buffer (find-file-noselect (e2e-get :file)) (current-buffer)))
         (before (with-current-buffer file (e2e-text)))
         (value (apply apply wedit args)))
    (e2e-push "edits" (list :edit wedit :before before
                            :after (with-current-buffer file (e2e-text))))
    (set-buffer buffer)
    value))
(advice-add 'eglot--apply-workspace-edit :around #'e2e-record-edit)

(defun e2e-idle ()
  "What an interactive Emacs does when idle in this buffer.
That is Eglot's pending didChange timer (`eglot-send-changes-idle-time')
and Flymake's start (`flymake-no-changes-timeout')."
  (when (timerp eglot--change-idle-timer)
    (let ((timer eglot--change-idle-timer))
      (cancel-timer timer)
      (apply (timer--function timer) (timer--args timer))))
  (when flymake-mode (flymake-start)))

(defun e2e-findings ()
  "This buffer's Flymake diagnostics that come from hunkwise, with their LSP data."
  (cl-loop for diagnostic in (flymake-diagnostics)
           for lsp = (cdr (assoc 'eglot-lsp-diag (eglot--diag-data diagnostic)))
           when (equal (plist-get lsp :source) "hunkwise")
           collect (cons diagnostic lsp)))

(defun e2e-events-tail (server)
  (ignore-errors
    (with-current-buffer (jsonrpc-events-buffer server)
      (buffer-substring-no-properties (max (point-min) (- (point-max) 6000)) (point-max)))))

(defun e2e-stderr-tail (server)
  (ignore-errors
    (with-current-buffer (jsonrpc-stderr-buffer server)
      (buffer-substring-no-properties (max (point-min) (- (point-max) 3000)) (point-max)))))

;;; The session

(defvar e2e-server nil)

(defun e2e-run ()
  (find-file (e2e-get :file))
  (e2e-put "major_mode" (symbol-name major-mode))
  (e2e-step "opened")

  ;; M-x eglot: the contact comes from `eglot-server-programs', where hunkwise-eglot.el
  ;; put `hunkwise-eglot-contact' for `hunkwise-modes'.
  (call-interactively #'eglot)
  (setq e2e-server (e2e-wait "Eglot to connect" #'eglot-current-server 60))
  (e2e-put "server_name" (plist-get (eglot--server-info e2e-server) :name))
  (e2e-put "server_pid" (process-id (jsonrpc--process e2e-server)))
  (e2e-put "flymake_mode" (and flymake-mode t))
  (e2e-step "connected")

  (let (status)
    (e2e-wait "the bundle to load"
              (lambda ()
                (setq status (hunkwise--execute "hunkwise.status"))
                (or (not (equal (plist-get status :state) "loading"))
                    (progn (accept-process-output nil 0.2) nil)))
              90)
    (e2e-put "status" status))
  (e2e-step "status")

  ;; The user's edit: 0-based lines [start, end) become `lines'.
  (let ((change (e2e-get :change)))
    (goto-char (point-min))
    (forward-line (plist-get change :start))
    (let ((beg (point)))
      (forward-line (- (plist-get change :end) (plist-get change :start)))
      (delete-region beg (point))
      (goto-char beg)
      (insert (mapconcat (lambda (line) (concat line "\n")) (plist-get change :lines) ""))))
  (e2e-put "edited_text" (e2e-text))
  (e2e-idle)
  (e2e-step "edited")

  ;; Flymake shows hunkwise's diagnostic on the changed lines.
  (let* ((finding (car (e2e-wait "hunkwise diagnostics"
                                 (lambda () (e2e-idle) (e2e-findings))
                                 90)))
         (diagnostic (car finding))
         (lsp (cdr finding)))
    (e2e-put "diagnostic"
             (list :line (plist-get (plist-get (plist-get lsp :range) :start) :line)
                   :character (plist-get (plist-get (plist-get lsp :range) :start) :character)
                   :flymake_line (1- (line-number-at-pos (flymake-diagnostic-beg diagnostic)))
                   :code (plist-get lsp :code)
                   :message (plist-get lsp :message)
                   :severity (plist-get lsp :severity)
                   :source (plist-get lsp :source)
                   :flymake_type (symbol-name (flymake-diagnostic-type diagnostic))
                   :flymake_text (flymake-diagnostic-text diagnostic)))
    (e2e-step "diagnostics")

    ;; M-x hunkwise-refine on the finding's line; in the menu the user picks "Apply
    ;; suggested refinement" (RET: the default).
    (goto-char (flymake-diagnostic-beg diagnostic))
    (let ((edits (length (gethash "edits" e2e-result [])))
          (last-nonmenu-event ?\r)) ; a key ran the command, not a mouse click
      (cl-letf (((symbol-function 'completing-read)
                 (lambda (prompt collection &rest _)
                   (let ((titles (mapcar (lambda (item) (if (consp item) (car item) item))
                                         collection)))
                     (e2e-put "menu" (list :prompt prompt :titles (vconcat titles)))
                     (or (car (member "Apply suggested refinement" titles))
                         (error "no \"Apply suggested refinement\" in %S" titles))))))
        (call-interactively #'hunkwise-refine))
      (e2e-wait "the refinement edit"
                (lambda () (> (length (gethash "edits" e2e-result [])) edits))
                60)
      (e2e-put "refinement" (aref (gethash "edits" e2e-result) edits))))
  (e2e-step "refined")

  ;; `hunkwise-edit' on whole lines (1-based, inclusive) right after the refinement, with
  ;; no idle time between (as from a key binding): the refinement's change has not been
  ;; sent yet, and `hunkwise-edit' must send it first or Eglot refuses the server's edit
  ;; for its stale version.  The server answers with workspace/applyEdit.
  (let* ((range (e2e-get :instruction_range))
         (beg (save-excursion (goto-char (point-min)) (forward-line (1- (car range))) (point)))
         (end (save-excursion (goto-char (point-min)) (forward-line (cadr range)) (point)))
         (edits (length (gethash "edits" e2e-result []))))
    (hunkwise-edit beg end (e2e-get :instruction))
    (e2e-wait "the hunkwise-edit edit"
              (lambda () (> (length (gethash "edits" e2e-result [])) edits))
              60)
    (e2e-put "instruction_edit" (aref (gethash "edits" e2e-result) edits)))
  (e2e-step "edited-with-instruction")

  (e2e-idle)
  (e2e-put "status_lines" (vconcat (hunkwise-status)))
  (e2e-step "done"))

(run-at-time (e2e-get :timeout_s) nil
             (lambda ()
               (e2e-put "error" (format "watchdog: timed out after %s s" (e2e-get :timeout_s)))
               (when e2e-server (e2e-put "events" (e2e-events-tail e2e-server)))
               (e2e-write)
               (kill-emacs 3)))

(let ((ok (condition-case-unless-debug err
              (progn (e2e-run) t)
            (error (e2e-put "error" (error-message-string err)) nil))))
  (when e2e-server
    (unless ok
      (e2e-put "events" (e2e-events-tail e2e-server))
      (e2e-put "stderr" (e2e-stderr-tail e2e-server)))
    ;; shutdown + exit, then Eglot deletes the process
    (let ((start (float-time)))
      (condition-case err
          (eglot-shutdown e2e-server)
        (error (e2e-put "shutdown_error" (error-message-string err))))
      (e2e-put "shutdown_s" (- (float-time) start)))
    (e2e-put "server_process" (format "%s" (process-status (jsonrpc--process e2e-server)))))
  (e2e-put "ok" (if ok t :json-false))
  (e2e-write)
  (set-buffer-modified-p nil)
  (kill-emacs (if ok 0 1)))

;;; e2e.el ends here
