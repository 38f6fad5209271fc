;;; hunkwise-eglot.el --- hunkwise's language server with Eglot  -*- lexical-binding: t; -*-

;; Load this file (or paste it into your init file) to start the hunkwise language server
;; with Eglot in the modes of `hunkwise-modes', then M-x eglot in a file of a git
;; repository.  The server's settings go in `hunkwise-settings' (sent as
;; initializationOptions); a project can override them in .dir-locals.el through
;; `eglot-workspace-configuration' under :hunkwise.  Commands: `hunkwise-edit',
;; `hunkwise-refine', `hunkwise-review', `hunkwise-train', `hunkwise-status'.
;; Works with Eglot 1.9 (Emacs 28 with elpa-eglot) and the Eglot built into Emacs 29+.

;;; Code:

(require 'eglot)
(require 'jsonrpc)

(defgroup hunkwise nil
  "A local, self-trained code reviewer, through Eglot."
  :group 'tools)

(defcustom hunkwise-server-command '("python3" "-m" "server")
  "The command that starts the hunkwise language server (stdio).
The interpreter must have hunkwise installed, e.g.
\\='(\"~/venvs/hunkwise/bin/python\" \"-m\" \"server\") or \\='(\"hunkwise-lsp\")."
  :type '(repeat string))

(defcustom hunkwise-modes '(python-mode python-ts-mode)
  "Major modes whose buffers Eglot connects to the hunkwise server.
Eglot runs one server per buffer: a mode listed here gets hunkwise
instead of its usual language server."
  :type '(repeat symbol))

(defcustom hunkwise-request-timeout 300
  "Seconds to wait for a hunkwise command (an edit or a review of the workspace).
A real base model on a CPU can take longer than jsonrpc's default 10 s."
  :type 'number)

(defcustom hunkwise-settings '()
  "The server's settings, by the server's own names, as a plist.
Keys: :bundle :device :threshold :diffBase :debounceMs :maxNewTokens
:maxInstructionChars
:comments :severity :exclude :engine :engineModel.  For example
\\='(:bundle \"~/bundles/myrepo\" :threshold 0.4 :diffBase \"origin/main\").
Unset keys get the server's defaults; use :json-false for false."
  :type 'plist)

(defun hunkwise-eglot-contact (&optional _interactive)
  "The Eglot contact of the hunkwise server, from the current settings."
  (append hunkwise-server-command
          (list :initializationOptions hunkwise-settings)))

(add-to-list 'eglot-server-programs (cons hunkwise-modes #'hunkwise-eglot-contact))

;;; Commands

(defun hunkwise--server ()
  (or (eglot-current-server)
      (user-error "hunkwise: no Eglot server here; M-x eglot in a file of a git repository")))

(defun hunkwise--execute (command &optional argument)
  "Run the server's COMMAND with ARGUMENT (a plist) and return its answer.
Changes not yet sent (Eglot sends them when Emacs is idle) go first:
the server must see the text the command's range refers to, and the
version of its edit must be the buffer's, or Eglot refuses the edit."
  (let ((server (hunkwise--server)))
    (when eglot--managed-mode (eglot--signal-textDocument/didChange))
    (jsonrpc-request server :workspace/executeCommand
                     (list :command command
                           :arguments (if argument (vector argument) []))
                     :timeout hunkwise-request-timeout)))

(defun hunkwise--lines-range (beg end)
  "The LSP range of the whole lines from BEG to END, line breaks included."
  (save-excursion
    (let* ((start (progn (goto-char beg) (line-beginning-position)))
           (stop (progn (goto-char end)
                        (when (and (bolp) (> end beg)) (backward-char))
                        (if (eobp) (point) (min (point-max) (1+ (line-end-position)))))))
      (list :start (eglot--pos-to-lsp-position start)
            :end (eglot--pos-to-lsp-position stop)))))

(defun hunkwise-edit (beg end instruction)
  "Replace the lines from BEG to END with what the edit adapter makes of them.
INSTRUCTION says what to change, e.g. \"Add type hints\"."
  (interactive
   (let ((region (if (use-region-p)
                     (list (region-beginning) (region-end))
                   (list (line-beginning-position) (line-end-position)))))
     (append region (list (read-string "hunkwise: edit instruction: ")))))
  (when (string-empty-p (string-trim instruction))
    (user-error "hunkwise: an instruction is needed"))
  (let ((answer (hunkwise--execute
                 "hunkwise.editWithInstruction"
                 (list :uri (eglot--path-to-uri (buffer-file-name))
                       :range (hunkwise--lines-range beg end)
                       :instruction (string-trim instruction)))))
    ;; The server has sent workspace/applyEdit already; Eglot applied it.
    (unless (eq (plist-get answer :applied) t)
      (message "hunkwise: the edit was not applied: %s" (plist-get answer :reason)))))

(defun hunkwise-refine ()
  "Offer the suggested refinement (and dismissal) of the finding at point."
  (interactive)
  (let ((bounds (if (use-region-p)
                    (list (region-beginning) (region-end))
                  (list (line-beginning-position) (line-end-position)))))
    (eglot-code-actions (car bounds) (cadr bounds) "quickfix" t)))

(defun hunkwise-review ()
  "Review every changed file of the repository against the diff base."
  (interactive)
  (let ((answer (hunkwise--execute "hunkwise.reviewWorkspace")))
    (message "hunkwise: reviewed %s changed files, %s findings"
             (plist-get answer :reviewed) (plist-get answer :flagged))))

(defun hunkwise-train (base)
  "Train a bundle on this repository from the BASE model, then load it.
\"tiny\" builds a small model from the repository's own text (CPU, minutes)."
  (interactive (list (read-string "hunkwise: base model: " "tiny")))
  (message "hunkwise: training from %s; progress shows in the mode line" base)
  (jsonrpc-async-request
   (hunkwise--server) :workspace/executeCommand
   (list :command "hunkwise.trainFromRepo" :arguments (vector (list :base base)))
   :success-fn (lambda (answer)
                 (message "hunkwise: %s"
                          (if (eq (plist-get answer :trained) t)
                              (format "trained and loaded %s" (plist-get answer :bundle))
                            (format "training did not finish: %s"
                                    (or (plist-get answer :reason) "cancelled")))))
   :timeout 86400))

(defun hunkwise-status-lines (status)
  "The lines `hunkwise-status' shows for the STATUS plist."
  (delq nil
        (list (format "hunkwise %s: %s" (plist-get status :version) (plist-get status :state))
              (let ((bundle (plist-get status :bundle)))
                (and (stringp bundle) (not (string-empty-p bundle)) (format "bundle: %s" bundle)))
              (let ((adapters (plist-get status :adapters)))
                (and (> (length adapters) 0)
                     (format "adapters: %s%s" (mapconcat #'identity adapters ", ")
                             (let ((device (plist-get status :device)))
                               (if (stringp device) (format " on %s" device) "")))))
              (format "diff base: %s" (plist-get status :base))
              (let ((text (plist-get status :message)))
                (and (stringp text) (not (string-empty-p text)) text)))))

(defun hunkwise-status ()
  "Show the server's state: bundle, adapters, device, diff base."
  (interactive)
  (let ((lines (hunkwise-status-lines (hunkwise--execute "hunkwise.status"))))
    (message "%s" (mapconcat #'identity lines "\n"))
    lines))

(provide 'hunkwise-eglot)
;;; hunkwise-eglot.el ends here
