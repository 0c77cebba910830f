-- The GPU backend.  Without a CUDA device (CI, this project's machines)
-- only the first block runs: the module loads, CUDA reports itself
-- unavailable with a reason, and moving a tensor there is a clear error;
-- the comparisons with the CPU (tests/helpers/device_suite.lua: every op
-- forward and backward, and training steps of the seed model, to 1e-4)
-- are pending with the reason "no CUDA device".  On a machine with one
-- they run against cuda:0.
local whorl = require "whorl"
local suite = require "helpers.device_suite"

local available = whorl.cuda.is_available()

describe("whorl.cuda without a device", function()
    it("loads with whorl and reports why CUDA is unavailable", function()
        assert.is_table(whorl.cuda)
        if available then return pending("a CUDA device is present") end
        assert.is_false(whorl.cuda.is_available())
        local reason = whorl.cuda.unavailable_reason()
        assert.is_string(reason)
        assert.is_true(#reason > 0)
        assert.are.equal(0, whorl.cuda.device_count())
        whorl.cuda.empty_cache() -- harmless without a device
    end)

    it("refuses to move tensors there, saying why", function()
        if available then return pending("a CUDA device is present") end
        local x = whorl.ones(2, 3)
        for _, f in ipairs({
            function() return x:cuda() end,
            function() return x:to("cuda") end,
            function() return x:to("cuda:0") end,
            function() return whorl.zeros({ 2 }, { device = "cuda" }) end,
            function() return whorl.cuda.synchronize() end,
        }) do
            local ok, err = pcall(f)
            assert.is_false(ok)
            assert.matches("CUDA is not available", tostring(err))
        end
        -- the CPU forms of to() still work
        assert.are.equal("float64", x:to("float64"):dtype())
        assert.are.equal("cpu", x:to("cpu").device)
        assert.has_error(function() x:to("gpu") end,
            "to: 'gpu' is neither a dtype (float32/float, float64/double, uint8/byte) nor a device (cpu, cuda, cuda:N)")
    end)
end)

describe("the CUDA backend against the CPU", function()
    if available then
        it("describes the device", function()
            assert.is_true(whorl.cuda.device_count() >= 1)
            assert.is_string(whorl.cuda.get_device_name())
            assert.matches("cuDNN", whorl.cuda.versions())
            assert.is_true(whorl.cuda.get_option("deterministic"))
        end)
    end
    for _, case in ipairs(suite.cases) do
        it(case.name, function()
            if not available then return pending("no CUDA device") end
            case.run("cuda")
            whorl.cuda.synchronize()
        end)
    end
    it("keeps its memory in the caching allocator and gives it back on empty_cache", function()
        if not available then return pending("no CUDA device") end
        local x = whorl.zeros({ 1024, 1024 }, { device = "cuda" })
        local s = whorl.cuda.memory_stats()
        assert.is_true(s.allocated_bytes >= 4 * 1024 * 1024)
        x:close()
        collectgarbage()
        local y = whorl.zeros({ 1024, 1024 }, { device = "cuda" })
        assert.is_true(whorl.cuda.memory_stats().cache_hits > s.cache_hits)
        y:close()
        collectgarbage()
        whorl.cuda.empty_cache()
        local e = whorl.cuda.memory_stats()
        assert.are.equal(e.allocated_bytes, e.reserved_bytes)
    end)
end)
