;;; demo.el --- hunkwise with Eglot in batch mode: the README's transcript  -*- lexical-binding: t; -*-

;; emacs --batch -l hunkwise-eglot.el -l demo.el FILE
;; with HUNKWISE_PYTHON (an interpreter with hunkwise) and HUNKWISE_BUNDLE set.  Opens
;; FILE (a Python file of a git repository, unchanged since HEAD), connects Eglot,
;; edits line 9, prints the hunkwise diagnostics, applies the suggested refinement as
;; the code-action menu would, runs `hunkwise-edit' on lines 1-2 and `hunkwise-status'.
;; Batch Emacs runs no idle timers, so the didChange and Flymake steps that an
;; interactive Emacs does by itself are called here.

;;; Code:

(require 'hunkwise-eglot)
(require 'flymake)

(defun demo-wait (what predicate &optional seconds)
  (let ((deadline (+ (float-time) (or seconds 120))))
    (while (not (funcall predicate))
      (when (> (float-time) deadline)
        (error "demo: timed out waiting for %s" what))
      (accept-process-output nil 0.1))))

(defun demo-show (title)
  (princ (format "--- %s ---\n%s" title (buffer-string))))

;; Interactive Emacs asks before applying an edit the server sends; batch Emacs cannot.
(setq eglot-confirm-server-initiated-edits nil)
(setq hunkwise-server-command (list (getenv "HUNKWISE_PYTHON") "-m" "server")
      hunkwise-settings (list :bundle (getenv "HUNKWISE_BUNDLE") :device "cpu"
                              :threshold 0.0 :debounceMs 50 :maxNewTokens 16))

(find-file (car command-line-args-left))
(setq command-line-args-left nil)
(python-mode)
(apply #'eglot (eglot--guess-contact))
(demo-wait "Eglot to connect" (lambda () (eglot-current-server)))
(princ (format "eglot: connected to %s\n"
               (plist-get (eglot--server-info (eglot-current-server)) :name)))

(demo-wait "the bundle to load"
           (lambda () (not (equal (plist-get (hunkwise--execute "hunkwise.status") :state)
                                  "loading"))))
(princ (format "M-x hunkwise-status\n%s\n"
               (mapconcat #'identity (hunkwise-status-lines (hunkwise--execute "hunkwise.status"))
                          "\n")))

;; The user's edit: line 9 becomes a debug print and a change.
(goto-char (point-min))
(forward-line 8)
(delete-region (line-beginning-position) (line-end-position))
(insert "        print(\"debug total\", item)\n        result += item * 2")
(eglot--signal-textDocument/didChange)
(demo-show "buffer after the edit")

(flymake-start)
(demo-wait "hunkwise diagnostics"
           (lambda () (flymake-start) (flymake-diagnostics)))
;; The comment follows the probability: give it a few seconds.
(ignore-errors
  (demo-wait "the review comment"
             (lambda ()
               (flymake-start)
               (not (string-match-p "may need review (p="
                                    (flymake-diagnostic-text (car (flymake-diagnostics))))))
             20))
(dolist (diagnostic (flymake-diagnostics))
  (princ (format "flymake: line %d: %s\n"
                 (line-number-at-pos (flymake-diagnostic-beg diagnostic))
                 (flymake-diagnostic-text diagnostic))))

;; The refinement, as choosing it in M-x hunkwise-refine's menu does.
(goto-char (flymake-diagnostic-beg (car (flymake-diagnostics))))
(let* ((actions (eglot-code-actions (line-beginning-position) (line-end-position) "quickfix"))
       (refine (seq-find (lambda (action) (eq (plist-get action :isPreferred) t)) actions))
       (before (buffer-string)))
  (princ (format "code actions: %s\n"
                 (mapconcat (lambda (action) (plist-get action :title)) actions ", ")))
  (let ((command (plist-get refine :command)))
    (eglot-execute-command (eglot-current-server) (plist-get command :command)
                           (plist-get command :arguments)))
  (demo-wait "the refinement" (lambda () (not (equal before (buffer-string)))) 60))
(eglot--signal-textDocument/didChange)
(demo-show "buffer after \"Apply suggested refinement\"")

(hunkwise-edit (point-min) (save-excursion (goto-char (point-min)) (forward-line 1) (point))
               "Add a module docstring")
(demo-show "buffer after M-x hunkwise-edit on lines 1-2 \"Add a module docstring\"")

(eglot-shutdown (eglot-current-server))
(set-buffer-modified-p nil)
;;; demo.el ends here
