-- The GPU spec's comparisons (tests/helpers/device_suite.lua), run on a
-- fake CUDA device whose memory is host memory and whose kernels are the
-- CPU ops (tests/c/fake_device.c): every op then takes its device path in
-- the ops layer (allocation on the device, the backend calls, the device
-- branches of backward, index buffers, host copies), so that path and the
-- GPU spec itself are exercised on machines without a GPU.  The CUDA
-- kernels proper are checked by cuda_spec.lua on a real device, and their
-- arithmetic by tests/c/test_kernel_math.c.
local suite = require "helpers.device_suite"

-- The fake backend calls into the core, so the core must be loaded with
-- its symbols global before it (an absolute path makes Lua call dlopen
-- again instead of reusing its handle, which promotes the core).
local function load_fake()
    local core = assert(package.searchpath("whorl.core", package.cpath))
    if core:sub(1, 1) ~= "/" then core = assert(os.getenv("PWD")) .. "/" .. core end
    assert(package.loadlib(core, "*"))
    local build = core:match("^(.*)/whorl/core%.so$")
    local open = assert(package.loadlib(build .. "/tests/fake_device.so", "luaopen_fake_device"))
    return open()
end

local whorl = require "whorl"
local fake = load_fake()

describe("the ops' device paths, on a fake device", function()
    setup(function() fake.install() end)
    teardown(function()
        collectgarbage()
        collectgarbage()
        fake.remove()
    end)

    it("is taken for cuda:0", function()
        assert.is_true(whorl.cuda.is_available())
        assert.are.equal("cuda:0", whorl.ones(2):cuda().device)
    end)

    for _, case in ipairs(suite.cases) do
        it(case.name, function() case.run("cuda") end)
    end
end)
