-- whorl.sweep and `whorl sweep`: grid expansion, seeded random sampling,
-- stable run names, flags, results from metrics.json files, the Pareto
-- front, and a real two-worker sweep of two tiny runs that a second call
-- skips.
local cjson = require "cjson"
local sweep = require "whorl.sweep"
local files = require "helpers.files"
local shell = require "helpers.shell"
local tmpdir, run, exists = shell.tmpdir, shell.run, shell.exists

local function metrics(psnr, params, seconds)
    return cjson.encode({ params = params, train_seconds = seconds,
        whole = { damaged = { mse = 0.05, psnr = 13, ssim = 0.4 }, restored = { mse = 0.01, psnr = psnr, ssim = 0.8 } },
        region = { damaged = { mse = 0.2, psnr = 7, ssim = 0.1 }, restored = { mse = 0.02, psnr = psnr - 3, ssim = 0.6 } } })
end

describe("whorl.sweep configurations", function()
    it("expands a grid into every combination, keys sorted, the last varying fastest", function()
        local configs = sweep.expand_grid({ kernel_size = { 3, 5 }, filters = { { 8 }, { 8, 16 }, { 8, 16, 32 } } })
        assert.are.equal(6, #configs)
        assert.are.same({ filters = { 8 }, kernel_size = 3 }, configs[1])
        assert.are.same({ filters = { 8 }, kernel_size = 5 }, configs[2])
        assert.are.same({ filters = { 8, 16, 32 }, kernel_size = 5 }, configs[6])
        assert.are.same({ {} }, sweep.expand_grid({}))
    end)

    it("samples a random space reproducibly from its seed, within its ranges", function()
        local space = { lr = { min = 1e-4, max = 1e-2, log = true }, epochs = { min = 2, max = 5, integer = true },
            optimizer = { "adam", "sgd", "rmsprop" } }
        local a, b = sweep.sample_random(space, 40, 7), sweep.sample_random(space, 40, 7)
        assert.are.same(a, b)
        assert.are_not.same(a, sweep.sample_random(space, 40, 8))
        local seen_opt, seen_epochs, low = {}, {}, 0
        for _, c in ipairs(a) do
            assert.is_true(c.lr >= 1e-4 and c.lr <= 1e-2, tostring(c.lr))
            if c.lr < 1e-3 then low = low + 1 end
            assert.are.equal("integer", math.type(c.epochs))
            assert.is_true(c.epochs >= 2 and c.epochs <= 5)
            seen_opt[c.optimizer], seen_epochs[c.epochs] = true, true
        end
        -- every choice and integer turns up in 40 draws; log-uniform puts about half below 1e-3
        assert.are.same({ adam = true, sgd = true, rmsprop = true }, seen_opt)
        assert.are.same({ [2] = true, [3] = true, [4] = true, [5] = true }, seen_epochs)
        assert.is_true(low > 8 and low < 32, "draws below 1e-3: " .. low)
    end)

    it("names runs stably and safely from their options", function()
        local opts = { filters = { 16, 32 }, kernel_size = 5, loss = "mse+ssim", lr = 0.001, epochs = 4 }
        local same = { epochs = 4, lr = 0.001, loss = "mse+ssim", kernel_size = 5, filters = { 16, 32 } }
        local keys = { "filters", "kernel_size", "loss" }
        local name = sweep.run_name(opts, keys)
        assert.are.equal(name, sweep.run_name(same, keys))
        assert.matches("^f16%.32_k5_mse%-ssim%-%x%x%x%x%x%x%x%x$", name)
        -- names must not change between versions, or a resumed sweep would redo its runs
        assert.are.equal("f16.32_k5_mse-ssim-" .. name:sub(-8), name)
        assert.are.equal(name, sweep.run_name({ filters = { 16, 32 }, kernel_size = 5, loss = "mse+ssim",
            lr = 0.001, epochs = 4 }, keys))
        same.lr = 0.002 -- an option that is not in the slug still changes the hash
        assert.are_not.equal(name, sweep.run_name(same, keys))
        local long = sweep.run_name({ data = "/some/very/long/path with spaces/and'quotes/" .. string.rep("x", 80) },
            { "data" })
        assert.is_true(#long <= 60, long)
        assert.matches("^[%w._-]+$", long)
    end)

    it("turns options into the job's flags", function()
        assert.are.same({ "--filters", "16,32", "--frozen-damage", "--kernel-size", "5", "--lr", "0.0003" },
            sweep.flags({ filters = { 16, 32 }, kernel_size = 5, lr = 3e-4, frozen_damage = true, resume_x = false }))
    end)

    it("reads the same description from Lua and JSON, and rejects bad ones", function()
        local dir = tmpdir()
        files.spit(dir .. "/a.lua", 'return {base = {epochs = 1}, grid = {filters = {{4}, {4, 8}}}}')
        files.spit(dir .. "/a.json", '{"base": {"epochs": 1}, "grid": {"filters": [[4], [4, 8]]}}')
        assert.are.same(sweep.plan(sweep.load_spec(dir .. "/a.lua")), sweep.plan(sweep.load_spec(dir .. "/a.json")))
        assert.has_error(function() sweep.check_spec({ grid = { lr = { 1 } }, random = {} }, "x.lua") end,
            "whorl sweep: x.lua: give grid or random, not both")
        assert.has_error(function() sweep.check_spec({ grids = {} }, "x.lua") end)
        assert.has_error(function() sweep.check_spec({ base = { out = "d" } }, "x.lua") end,
            "whorl sweep: x.lua: base sets 'out', which the sweep sets itself")
        assert.has_error(function() sweep.check_spec({ random = { samples = 2, space = { lr = { min = 0, max = 1, log = true } } } },
            "x.lua") end, "whorl sweep: x.lua: random.space.lr: log ranges need min > 0")
        files.spit(dir .. "/bad.json", '{"grid": ')
        local ok, err = pcall(sweep.load_spec, dir .. "/bad.json")
        assert.is_false(ok)
        assert.matches("bad.json is not valid JSON", err, 1, true)
        shell.remove(dir)
    end)
end)

describe("whorl.sweep results", function()
    local spec = { base = { epochs = 1 }, grid = { filters = { { 4 }, { 8 }, { 16 }, { 32 } } } }

    it("collects metrics.json files into a sorted table, CSV and Markdown", function()
        local dir = tmpdir()
        local runs, keys = sweep.plan(spec)
        assert.are.same({ "filters" }, keys)
        -- runs 1 and 3 finished, run 2 failed, run 4 never ran
        os.execute(string.format("mkdir -p '%s/%s' '%s/%s' '%s/%s'", dir, runs[1].name, dir, runs[2].name, dir, runs[3].name))
        files.spit(dir .. "/" .. runs[1].name .. "/metrics.json", metrics(20.5, 1000, 12.5))
        local with_identity = cjson.decode(metrics(22.25, 4000, 30))
        with_identity.identity = { eer = { damaged = 0.5, restored = 0.25 },
            minutiae = { restored = { precision = 0.75, recall = 0.625 } } }
        files.spit(dir .. "/" .. runs[3].name .. "/metrics.json", cjson.encode(with_identity))
        files.spit(dir .. "/" .. runs[2].name .. "/exit_code", "1\n")
        files.spit(dir .. "/" .. runs[2].name .. "/failed.json",
            cjson.encode({ exit_code = 1, log_tail = "loading\nreconstruct: --filters: not a number: x" }))
        local rows = sweep.collect(dir, runs)
        assert.are.same({ runs[3].name, runs[1].name, runs[2].name, runs[4].name },
            { rows[1].name, rows[2].name, rows[3].name, rows[4].name })
        assert.are.same({ "done", "done", "failed", "not run" }, { rows[1].status, rows[2].status, rows[3].status, rows[4].status })
        assert.are.equal(22.25, rows[1].psnr)
        assert.are.equal(19.25, rows[1].region_psnr)
        assert.are.equal(4000, rows[1].params)
        assert.are.equal(1, rows[3].exit_code)
        assert.are.equal("reconstruct: --filters: not a number: x", rows[3].error)

        local md = sweep.markdown(rows, keys)
        local table_lines = {}
        for line in md:gmatch("[^\n]+") do
            if line:match("^| %d") then table_lines[#table_lines + 1] = line end
        end
        assert.are.same({
            "| 1 | `" .. runs[3].name .. "` | 16 | 4000 | 30.0 | 22.25 | 0.800 | 19.25 | 0.600 | 0.250 |",
            "| 2 | `" .. runs[1].name .. "` | 4 | 1000 | 12.5 | 20.50 | 0.800 | 17.50 | 0.600 | - |" }, table_lines)
        assert.truthy(md:find("PSNR whole 13.00 dB, region 7.00 dB, EER 0.500.", 1, true), md)
        assert.truthy(md:find("- `" .. runs[2].name .. "`: failed (exit 1): reconstruct: --filters: not a number: x", 1, true))
        assert.truthy(md:find("- `" .. runs[4].name .. "`: not run", 1, true))

        local csv = sweep.csv(rows)
        local lines = {}
        for line in csv:gmatch("[^\n]+") do lines[#lines + 1] = line end
        assert.are.equal(5, #lines)
        assert.are.equal("name,status,epochs,filters,params,train_seconds,psnr,ssim,region_psnr,region_ssim," ..
            "damaged_psnr,damaged_region_psnr,eer,damaged_eer,minutiae_precision,minutiae_recall,exit_code,error",
            lines[1])
        assert.are.equal(runs[3].name .. ",done,1,16,4000,30,22.25,0.8,19.25,0.6,13,7,0.25,0.5,0.75,0.625,,", lines[2])
        assert.are.equal(runs[1].name .. ",done,1,4,1000,12.5,20.5,0.8,17.5,0.6,13,7,,,,,,", lines[3])

        local written = sweep.write_results(dir, rows, keys)
        assert.is_true(exists(dir .. "/results.csv") and exists(dir .. "/results.md"))
        assert.are.same({ "results.csv", "results.md", "pareto.png", "pareto_time.png" },
            { written[1]:match("[^/]+$"), written[2]:match("[^/]+$"), written[3]:match("[^/]+$"), written[4]:match("[^/]+$") })
        for _, path in ipairs(written) do assert.is_true(exists(path), path) end
        assert.are.equal("\137PNG", files.slurp(dir .. "/pareto.png"):sub(1, 4))
        shell.remove(dir)
    end)

    it("finds the Pareto front: fewest parameters for the best PSNR", function()
        local points = { { x = 1, y = 10 }, { x = 2, y = 12 }, { x = 3, y = 11 }, { x = 4, y = 15 }, { x = 2, y = 9 },
            { x = 5, y = 15 } }
        assert.are.same({ 1, 2, 4 }, sweep.pareto(points, { x = "min", y = "max" }))
        assert.are.same({ 6 }, sweep.pareto(points, { x = "max", y = "max" })) -- (5, 15) beats (4, 15)
        assert.are.same({ 5, 3, 6 }, sweep.pareto(points, { x = "max", y = "min" })) -- sorted by x
        local rows = { { status = "done", params = 10, psnr = 20, name = "a" }, { status = "failed", name = "b" },
            { status = "done", params = 5, name = "c" } }
        assert.are.same({ { x = 10, y = 20, label = "a" } }, sweep.points(rows, "params"))
    end)
end)

describe("whorl sweep (end to end)", function()
    it("runs two tiny configurations on two workers, then skips them when run again", function()
        local dir = tmpdir()
        local cmd = shell.whorl() .. "sweep experiments/sweeps/tiny.lua --workers 2 --poll 0.2 --out " .. dir
        local out, code = run(cmd)
        assert.are.equal(0, code, out)
        assert.matches("2 runs: 2 to run with 2 workers", out, 1, true)
        local runs = sweep.plan(sweep.load_spec("experiments/sweeps/tiny.lua"))
        assert.are.equal(2, #runs)
        for _, r in ipairs(runs) do
            local m = cjson.decode(files.slurp(dir .. "/" .. r.name .. "/metrics.json"))
            assert.is_true(m.whole.restored.psnr > 0)
            assert.is_true(exists(dir .. "/" .. r.name .. "/log.txt"))
            assert.are.equal("0", files.slurp(dir .. "/" .. r.name .. "/exit_code"):match("%d+"))
        end
        local md = files.slurp(dir .. "/results.md")
        for _, r in ipairs(runs) do assert.truthy(md:find("`" .. r.name .. "`", 1, true), md) end

        local before = files.slurp(dir .. "/" .. runs[1].name .. "/metrics.json")
        out, code = run(cmd)
        assert.are.equal(0, code, out)
        assert.matches("2 runs: 0 to run with 2 workers", out, 1, true)
        assert.matches("skip  " .. runs[1].name .. ": already done", out, 1, true)
        assert.are.equal(before, files.slurp(dir .. "/" .. runs[1].name .. "/metrics.json"))
        out, code = run(cmd .. " --dry-run")
        assert.are.equal(0, code, out)
        for _, r in ipairs(runs) do
            assert.matches("whorl reconstruct " .. table.concat(sweep.flags(r.options), " ") .. " --out " .. dir ..
                "/" .. r.name .. " --quiet  [done]", out, 1, true)
        end

        -- a run killed after its checkpoint (no metrics.json, no exit status)
        -- goes on from it instead of starting over
        local rdir = dir .. "/" .. runs[1].name
        local history = files.slurp(rdir .. "/history.csv")
        os.remove(rdir .. "/metrics.json")
        os.remove(rdir .. "/exit_code")
        assert.is_true(sweep.resumable(rdir))
        out, code = run(cmd)
        assert.are.equal(0, code, out)
        assert.matches("resume " .. runs[1].name, out, 1, true)
        assert.matches("--resume", files.slurp(rdir .. "/run.sh"), 1, true)
        assert.is_true(exists(rdir .. "/metrics.json"), out)
        -- every epoch was already done: the history gains no rows
        assert.are.equal(history, files.slurp(rdir .. "/history.csv"))
        assert.is_false(sweep.resumable(rdir))
        shell.remove(dir)
    end)

    it("waits for a run an earlier call started that is still going, instead of starting it twice", function()
        local dir = tmpdir()
        local spec = { base = { epochs = 1 }, grid = { filters = { { 4 } } } }
        local name = sweep.plan(spec)[1].name
        local rd = dir .. "/" .. name
        os.execute("mkdir -p '" .. rd .. "'")
        files.spit(dir .. "/m.json", metrics(18, 100, 1))
        -- a stand-in for that run: a process group of its own that finishes the run in a moment
        os.execute(string.format("setsid sh -c 'sleep 2; cp %s/m.json %s/metrics.json; echo 0 > %s/exit_code' " ..
            "< /dev/null > /dev/null 2>&1 & echo $! > %s/pid", dir, rd, rd, rd))
        local lines = {}
        local result = sweep.run(spec, { out = dir, command = "false", poll = 0.2,
            say = function(line) lines[#lines + 1] = line end })
        assert.are.equal("wait  " .. name .. ": still running from an earlier call", lines[1])
        assert.are.equal(0, result.ran)
        assert.are.equal("done", result.rows[1].status)
        assert.is_false(exists(rd .. "/run.sh"), "the sweep started the run again")
        shell.remove(dir)
    end)

    it("records a failed run with its exit status and log, and retries it only when asked", function()
        local dir = tmpdir()
        files.spit(dir .. "/bad.lua", 'return {base = {size = 32, fingers = 2, impressions = 1, test_fingers = 1, ' ..
            'epochs = 1}, grid = {model = {"no-such-model"}}}')
        local cmd = shell.whorl() .. "sweep " .. dir .. "/bad.lua --poll 0.2 --out " .. dir .. "/sweep"
        local out, code = run(cmd)
        assert.are_not.equal(0, code, out)
        assert.matches("1 run failed or did not finish", out, 1, true)
        local name = sweep.plan(sweep.load_spec(dir .. "/bad.lua"))[1].name
        local failed = cjson.decode(files.slurp(dir .. "/sweep/" .. name .. "/failed.json"))
        assert.are_not.equal(0, failed.exit_code)
        assert.matches("'--model' must be one of", failed.log_tail, 1, true)
        assert.matches("'--model' must be one of", files.slurp(dir .. "/sweep/results.md"), 1, true)

        out = run(cmd)
        assert.matches("failed before (--retry-failed runs it again)", out, 1, true)
        assert.matches("1 runs: 0 to run", out, 1, true)
        out = run(cmd .. " --retry-failed")
        assert.matches("1 runs: 1 to run", out, 1, true)
        shell.remove(dir)
    end)
end)
