-- The init.lua of the end-to-end test (nvim --clean -u test/init.lua): the plugin from
-- this checkout on the runtimepath, set up the way a user would, with the interpreter,
-- bundle and settings the test passes in $HUNKWISE_NVIM_TEST (a JSON object).
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
vim.opt.runtimepath:prepend(vim.fn.fnamemodify(here, ':h'))
vim.opt.swapfile = false
vim.opt.shadafile = 'NONE'

local test = vim.json.decode(vim.env.HUNKWISE_NVIM_TEST)
require('hunkwise').setup({
  cmd = { test.python, '-m', 'server' },
  bundle = test.bundle,
  device = 'cpu',
  threshold = 0, -- an untrained bundle's probabilities are arbitrary: flag every hunk
  debounceMs = 50,
  maxNewTokens = 8,
  progress = false,
})
