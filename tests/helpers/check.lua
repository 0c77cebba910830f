-- Assertions the specs share.
--   local check = require "helpers.check"
--   check.max_diff(a, b)               largest absolute difference of two tensors
--   check.raises(fn, "part", ...)      fn must fail, its message containing every part
local assert = require "luassert"

local M = {}

function M.max_diff(a, b) return (a - b):abs():max():item() end

function M.raises(fn, ...)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    for _, want in ipairs{ ... } do assert.matches(want, tostring(err), 1, true) end
end

return M
