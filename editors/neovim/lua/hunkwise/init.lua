-- hunkwise for Neovim 0.10+: starts the hunkwise language server for buffers inside a git
-- repository (vim.lsp.config/vim.lsp.enable on 0.11+, vim.lsp.start on 0.10), passes the
-- server's settings as initializationOptions and on workspace/configuration, and adds
-- :HunkwiseEdit, :HunkwiseRefine, :HunkwiseReview, :HunkwiseTrain, :HunkwiseCancel and
-- :HunkwiseStatus. See :help hunkwise.

local M = {}

M.name = 'hunkwise'

--- The server's settings (section "hunkwise"), by the server's own names.
M.setting_keys = {
  'bundle',
  'device',
  'threshold',
  'diffBase',
  'debounceMs',
  'maxNewTokens',
  'maxInstructionChars',
  'comments',
  'severity',
  'exclude',
  'engine',
  'engineModel',
}

--- Options of the plugin itself (everything else in setup() must be a server setting).
local plugin_keys = {
  cmd = true,
  cmd_cwd = true,
  filetypes = true,
  on_attach = true,
  capabilities = true,
  progress = true,
}

local has_011 = vim.fn.has('nvim-0.11') == 1

--- The plugin's folder (editors/neovim): the server's working directory, so that
--- `python -m server` never picks up a `server` package of the project being edited.
local function plugin_root()
  local source = debug.getinfo(1, 'S').source:sub(2)
  return vim.fn.fnamemodify(source, ':p:h:h:h')
end

local function default_cmd()
  if vim.fn.executable('hunkwise-lsp') == 1 then
    return { 'hunkwise-lsp' }
  end
  return { 'python3', '-m', 'server' }
end

M.options = nil ---@type table?
M.settings = {} ---@type table<string, any>
--- Work-done progress tokens of running hunkwise work, by client id (for :HunkwiseCancel).
local progress_tokens = {} ---@type table<integer, table<string|integer, string>>

--- Splits setup() options into the plugin's options and the server's settings.
--- Unknown keys are reported, not sent.
function M.split_options(opts)
  local plugin, settings, unknown = {}, {}, {}
  local known = {}
  for _, key in ipairs(M.setting_keys) do
    known[key] = true
  end
  for key, value in pairs(opts or {}) do
    if plugin_keys[key] then
      plugin[key] = value
    elseif known[key] then
      settings[key] = value
    elseif key == 'settings' and type(value) == 'table' then
      -- also accept { settings = { hunkwise = {...} } } or { settings = {...} }
      for k, v in pairs(value.hunkwise or value) do
        settings[k] = v
      end
    else
      table.insert(unknown, key)
    end
  end
  table.sort(unknown)
  return plugin, settings, unknown
end

-- -- the client --------------------------------------------------------------------------

local function clients(bufnr)
  return vim.lsp.get_clients({ name = M.name, bufnr = bufnr })
end

--- A hunkwise client for the buffer (or any running one), or nil after saying why.
local function client_for(bufnr)
  local found = clients(bufnr)[1] or clients(nil)[1]
  if not found then
    vim.notify(
      'hunkwise: no server attached; open a file inside a git repository (see :help hunkwise)',
      vim.log.levels.WARN
    )
  end
  return found
end

local function request(client, method, params, handler, bufnr)
  if has_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function notify(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

--- Runs a server command; `on_result(result)` gets its answer (errors are reported).
function M.execute(command, argument, on_result, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    return nil
  end
  local params = { command = command, arguments = argument ~= nil and { argument } or {} }
  local _, id = request(client, 'workspace/executeCommand', params, function(err, result)
    if err then
      vim.notify(('hunkwise: %s failed: %s'):format(command, err.message), vim.log.levels.ERROR)
      return
    end
    if on_result then
      on_result(result)
    end
  end, bufnr)
  return id
end

--- Only buffers of files inside a git repository get the server: it reviews changes
--- against git.
local function root_dir(bufnr)
  if vim.bo[bufnr].buftype ~= '' or vim.api.nvim_buf_get_name(bufnr) == '' then
    return nil
  end
  return vim.fs.root(bufnr, '.git')
end

local function client_config()
  local opts = M.options
  return {
    name = M.name,
    cmd = opts.cmd,
    cmd_cwd = opts.cmd_cwd,
    init_options = vim.deepcopy(M.settings),
    settings = { hunkwise = vim.deepcopy(M.settings) },
    capabilities = opts.capabilities,
    on_attach = opts.on_attach,
  }
end

local function start_legacy(bufnr)
  local root = root_dir(bufnr)
  if not root then
    return
  end
  local filetypes = M.options.filetypes
  if filetypes and not vim.tbl_contains(filetypes, vim.bo[bufnr].filetype) then
    return
  end
  local config = client_config()
  config.root_dir = root
  config.workspace_folders = { { uri = vim.uri_from_fname(root), name = root } }
  vim.lsp.start(config, { bufnr = bufnr })
end

-- -- progress ----------------------------------------------------------------------------

local function on_progress(event)
  local client = vim.lsp.get_client_by_id(event.data.client_id)
  if not client or client.name ~= M.name then
    return
  end
  local params = event.data.params or {}
  local value = params.value or {}
  local tokens = progress_tokens[client.id] or {}
  progress_tokens[client.id] = tokens
  if value.kind == 'begin' then
    tokens[params.token] = value.title or ''
  elseif value.kind == 'end' then
    tokens[params.token] = nil
  end
  if M.options.progress == false then
    return
  end
  local title = tokens[params.token] or value.title or 'hunkwise'
  local parts = { title }
  if value.percentage then
    table.insert(parts, ('%d%%'):format(value.percentage))
  end
  if value.message then
    table.insert(parts, value.message)
  end
  vim.api.nvim_echo({ { table.concat(parts, ' '), 'Comment' } }, false, {})
end

-- -- commands ----------------------------------------------------------------------------

--- The LSP range of whole lines `first`..`last` (1-based) of `bufnr`.
function M.line_range(bufnr, first, last, encoding)
  local last_line = vim.api.nvim_buf_get_lines(bufnr, last - 1, last, true)[1]
  local character = vim.lsp.util.character_offset(bufnr, last - 1, #last_line, encoding or 'utf-16')
  return {
    start = { line = first - 1, character = 0 },
    ['end'] = { line = last - 1, character = character },
  }
end

--- Replace lines `first`..`last` of the buffer with what the edit adapter makes of them.
function M.edit(instruction, first, last, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    return
  end
  instruction = vim.trim(instruction or '')
  if instruction == '' then
    vim.ui.input({ prompt = 'hunkwise: edit instruction: ' }, function(input)
      if input and vim.trim(input) ~= '' then
        M.edit(input, first, last, bufnr)
      end
    end)
    return
  end
  local argument = {
    uri = vim.uri_from_bufnr(bufnr),
    range = M.line_range(bufnr, first, last, client.offset_encoding),
    instruction = instruction,
  }
  vim.api.nvim_echo({ { 'hunkwise: editing lines ' .. first .. '-' .. last .. '…', 'Comment' } }, false, {})
  -- The server answers with workspace/applyEdit, which Neovim applies itself.
  M.execute('hunkwise.editWithInstruction', argument, function(result)
    if type(result) == 'table' and result.applied == false then
      vim.notify('hunkwise: the edit was not applied: ' .. tostring(result.reason or '?'), vim.log.levels.WARN)
    end
  end, bufnr)
end

--- Is this code action hunkwise's "Apply suggested refinement"?
function M.is_refinement(action)
  if type(action.command) == 'table' and action.command.command == 'hunkwise.applyRefinement' then
    return true
  end
  return action.kind == 'quickfix'
    and action.isPreferred == true
    and type(action.data) == 'table'
    and action.data.hunk ~= nil
end

--- Apply the suggested refinement of the finding under the cursor.
function M.refine()
  vim.lsp.buf.code_action({
    context = { only = { 'quickfix' } },
    filter = M.is_refinement,
    apply = true,
  })
end

function M.review()
  M.execute('hunkwise.reviewWorkspace', nil, function(result)
    if type(result) == 'table' and not result.error then
      vim.notify(
        ('hunkwise: reviewed %d changed files, %d findings'):format(result.reviewed or 0, result.flagged or 0)
      )
    end
  end)
end

function M.train(base)
  local argument = {}
  if base and vim.trim(base) ~= '' then
    argument.base = vim.trim(base)
  end
  vim.notify('hunkwise: training on this repository (base ' .. (argument.base or 'tiny') .. '); :HunkwiseCancel stops it')
  M.execute('hunkwise.trainFromRepo', argument, function(result)
    if type(result) ~= 'table' then
      return
    end
    if result.trained then
      vim.notify('hunkwise: trained and loaded the bundle at ' .. tostring(result.bundle))
    elseif result.cancelled then
      vim.notify('hunkwise: training cancelled; the previous bundle, if any, is unchanged')
    elseif result.reason then
      vim.notify('hunkwise: training did not run: ' .. tostring(result.reason), vim.log.levels.WARN)
    end
  end)
end

--- Ask the server to stop its cancellable work (training, workspace review).
function M.cancel()
  local sent = 0
  for _, client in ipairs(clients(nil)) do
    for token in pairs(progress_tokens[client.id] or {}) do
      notify(client, 'window/workDoneProgress/cancel', { token = token })
      sent = sent + 1
    end
  end
  if sent == 0 then
    vim.notify('hunkwise: nothing to cancel')
  end
end

--- The lines :HunkwiseStatus shows for a hunkwise.status answer.
function M.describe_status(status)
  local lines = { ('hunkwise %s: %s'):format(status.version or '', status.state or '?') }
  if status.bundle and status.bundle ~= '' then
    table.insert(lines, 'bundle: ' .. status.bundle)
  end
  if type(status.adapters) == 'table' and #status.adapters > 0 then
    local device = status.device ~= vim.NIL and status.device and (' on ' .. status.device) or ''
    table.insert(lines, 'adapters: ' .. table.concat(status.adapters, ', ') .. device)
  end
  if status.base then
    table.insert(lines, 'diff base: ' .. status.base)
  end
  if status.training == true then
    table.insert(lines, 'training: running')
  end
  if status.message and status.message ~= vim.NIL and status.message ~= '' then
    table.insert(lines, status.message)
  end
  return lines
end

function M.status(on_status)
  M.execute('hunkwise.status', nil, function(result)
    if on_status then
      on_status(result)
    elseif type(result) == 'table' then
      vim.notify(table.concat(M.describe_status(result), '\n'))
    end
  end)
end

local function create_commands()
  local command = vim.api.nvim_create_user_command
  command('HunkwiseEdit', function(args)
    M.edit(args.args, args.line1, args.line2)
  end, { nargs = '*', range = true, desc = 'hunkwise: edit the lines with an instruction' })
  command('HunkwiseRefine', M.refine, { desc = 'hunkwise: apply the suggested refinement under the cursor' })
  command('HunkwiseReview', M.review, { desc = 'hunkwise: review every changed file' })
  command('HunkwiseTrain', function(args)
    M.train(args.args)
  end, { nargs = '?', desc = 'hunkwise: train a bundle on this repository [base model]' })
  command('HunkwiseCancel', M.cancel, { desc = 'hunkwise: cancel training or a workspace review' })
  command('HunkwiseStatus', function()
    M.status()
  end, { desc = 'hunkwise: show the server status' })
end

-- -- setup -------------------------------------------------------------------------------

--- Change the server's settings at run time (e.g. { threshold = 0.3 }).
function M.configure(settings)
  local _, new, unknown = M.split_options(settings)
  if #unknown > 0 then
    vim.notify('hunkwise: unknown settings: ' .. table.concat(unknown, ', '), vim.log.levels.WARN)
  end
  M.settings = vim.tbl_extend('force', M.settings, new)
  if has_011 then
    vim.lsp.config(M.name, { init_options = vim.deepcopy(M.settings), settings = { hunkwise = vim.deepcopy(M.settings) } })
  end
  for _, client in ipairs(clients(nil)) do
    client.settings = { hunkwise = vim.deepcopy(M.settings) }
    notify(client, 'workspace/didChangeConfiguration', { settings = client.settings })
  end
end

--- require("hunkwise").setup({ cmd = {...}, bundle = "...", threshold = 0.4, ... })
function M.setup(opts)
  local plugin, settings, unknown = M.split_options(opts)
  if #unknown > 0 then
    vim.notify(
      'hunkwise: unknown options (not sent): ' .. table.concat(unknown, ', ') .. '; see :help hunkwise-settings',
      vim.log.levels.WARN
    )
  end
  M.options = vim.tbl_extend('force', { cmd = default_cmd(), cmd_cwd = plugin_root(), progress = true }, plugin)
  M.settings = settings
  create_commands()

  local group = vim.api.nvim_create_augroup('hunkwise', { clear = true })
  vim.api.nvim_create_autocmd('LspProgress', { group = group, callback = on_progress })

  if has_011 then
    local config = client_config()
    config.filetypes = M.options.filetypes
    config.root_dir = function(bufnr, on_dir)
      local root = root_dir(bufnr)
      if root then
        on_dir(root)
      end
    end
    vim.lsp.config(M.name, config)
    vim.lsp.enable(M.name)
  else
    vim.api.nvim_create_autocmd('FileType', {
      group = group,
      callback = function(event)
        start_legacy(event.buf)
      end,
    })
    -- buffers already open when setup() runs
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(bufnr) and vim.bo[bufnr].filetype ~= '' then
        start_legacy(bufnr)
      end
    end
  end
end

return M
