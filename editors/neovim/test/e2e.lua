-- The end-to-end driver (nvim --headless ... -c "luafile test/e2e.lua"): open a file of a
-- git repository, edit it, wait for hunkwise's diagnostics, apply the refinement code
-- action, run :HunkwiseEdit on a range, and write what happened to $HUNKWISE_NVIM_TEST's
-- `out` as JSON. Every wait has a timeout, and a watchdog quits, so a hang fails.
local test = vim.json.decode(vim.env.HUNKWISE_NVIM_TEST)
local result = { steps = {}, edits = {}, messages = {}, transcript = {} }

local function write_result()
  local file = assert(io.open(test.out, 'w'))
  file:write(vim.json.encode(result))
  file:close()
end

--- A line of the human-readable transcript (editors/neovim/README.md shows one).
local function say(text)
  table.insert(result.transcript, text)
end

local function say_buffer(bufnr)
  for number, line in ipairs(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)) do
    say(('%3d  %s'):format(number, line))
  end
end

local function step(name)
  table.insert(result.steps, name)
  write_result()
end

-- A hang fails: write what we have and quit with an error status.
local watchdog = assert(vim.uv.new_timer())
watchdog:start(test.timeout_ms, 0, vim.schedule_wrap(function()
  result.error = 'watchdog: timed out after ' .. test.timeout_ms .. ' ms'
  write_result()
  vim.cmd('cquit! 3')
end))

-- Record every edit Neovim applies (code action edits and workspace/applyEdit alike).
local apply_workspace_edit = vim.lsp.util.apply_workspace_edit
vim.lsp.util.apply_workspace_edit = function(edit, encoding)
  table.insert(result.edits, { edit = edit, encoding = encoding })
  return apply_workspace_edit(edit, encoding)
end
local notify = vim.notify
vim.notify = function(message, level, opts)
  table.insert(result.messages, tostring(message))
  return notify(message, level, opts)
end

local function buffer_text(bufnr)
  return table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), '\n') .. '\n'
end

local function must(ok, what)
  if not ok then
    error('timed out: ' .. what, 0)
  end
end

local function run()
  local hunkwise = require('hunkwise')
  vim.cmd.edit(vim.fn.fnameescape(test.file))
  local bufnr = vim.api.nvim_get_current_buf()
  step('opened')

  must(vim.wait(30000, function()
    return #vim.lsp.get_clients({ name = 'hunkwise', bufnr = bufnr }) > 0
  end, 50), 'the hunkwise client to attach')
  local client = vim.lsp.get_clients({ name = 'hunkwise', bufnr = bufnr })[1]
  result.server_name = client.server_info and client.server_info.name
  say(('-- %s attached (server %s)'):format(client.name, tostring(result.server_name)))
  step('attached')

  local status
  must(vim.wait(60000, function()
    local answer = client:request_sync('workspace/executeCommand', { command = 'hunkwise.status', arguments = {} }, 5000, bufnr)
    status = answer and answer.result
    return status ~= nil and status.state ~= 'loading'
  end, 200), 'the bundle to load')
  result.status = status
  say(':HunkwiseStatus')
  for _, line in ipairs(hunkwise.describe_status(status)) do
    say('  ' .. line)
  end
  step('status')

  -- The user's edit (test.change: 0-based start, exclusive end, new lines).
  vim.api.nvim_buf_set_lines(bufnr, test.change.start, test.change['end'], true, test.change.lines)
  result.edited_text = buffer_text(bufnr)
  say('-- buffer after the edit:')
  say_buffer(bufnr)
  step('edited')

  local function findings()
    return vim.tbl_filter(function(d)
      return d.source == 'hunkwise'
    end, vim.diagnostic.get(bufnr))
  end
  must(vim.wait(90000, function()
    return #findings() > 0
  end, 100), 'hunkwise diagnostics')
  local finding = findings()[1]
  result.diagnostic = {
    lnum = finding.lnum,
    col = finding.col,
    end_lnum = finding.end_lnum,
    end_col = finding.end_col,
    code = finding.code,
    message = finding.message,
    severity = finding.severity,
    source = finding.source,
  }
  say(':lua vim.diagnostic.get(0)')
  for _, d in ipairs(findings()) do
    say(('  line %d-%d [%s/%s] %s'):format(d.lnum + 1, d.end_lnum + 1, d.source, d.code, d.message))
  end
  step('diagnostics')

  -- The refinement quick fix of the finding, applied without a menu.
  vim.api.nvim_win_set_cursor(0, { finding.lnum + 1, 0 })
  local before = buffer_text(bufnr)
  local edits = #result.edits
  -- :HunkwiseRefine is vim.lsp.buf.code_action({ filter = is_refinement, apply = true })
  vim.cmd('HunkwiseRefine')
  must(vim.wait(60000, function()
    return #result.edits > edits
  end, 50), 'the refinement edit')
  result.refinement = { before = before, after = buffer_text(bufnr), edit = result.edits[#result.edits].edit }
  say(('-- cursor on line %d, :HunkwiseRefine'):format(finding.lnum + 1))
  say_buffer(bufnr)
  step('refined')

  -- :HunkwiseEdit on a range the refinement left alone (test.instruction_range); the
  -- server answers with workspace/applyEdit, which Neovim applies.
  before = buffer_text(bufnr)
  edits = #result.edits
  local first, last = test.instruction_range[1], test.instruction_range[2]
  vim.cmd(('%d,%dHunkwiseEdit %s'):format(first, last, test.instruction))
  must(vim.wait(60000, function()
    return #result.edits > edits
  end, 50), 'the :HunkwiseEdit edit')
  result.instruction_edit = { before = before, after = buffer_text(bufnr), edit = result.edits[#result.edits].edit }
  say((':%d,%dHunkwiseEdit %s'):format(first, last, test.instruction))
  say_buffer(bufnr)
  step('edited-with-instruction')

  local done = false
  hunkwise.status(function(answer)
    result.final_status = answer
    done = true
  end)
  must(vim.wait(10000, function()
    return done
  end, 50), ':HunkwiseStatus')
  result.status_lines = hunkwise.describe_status(result.final_status)
  step('done')
end

local ok, err = xpcall(run, debug.traceback)
if not ok then
  result.error = tostring(err)
end
-- Stop the server cleanly (shutdown + exit) before quitting.
for _, c in ipairs(vim.lsp.get_clients({ name = 'hunkwise' })) do
  vim.lsp.stop_client(c.id)
end
vim.wait(10000, function()
  return #vim.lsp.get_clients({ name = 'hunkwise' }) == 0
end, 50)
result.ok = ok
write_result()
watchdog:stop()
vim.cmd(ok and 'qall!' or 'cquit! 1')
