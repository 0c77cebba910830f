-- End-to-end speed of the seed autoencoders: one training step (forward,
-- MSE, backward, RMSprop update) at batch 16 and batch-1 inference, for the
-- 224x224 seed model (models/autoencoder224.lua, 314,625 parameters) and the
-- seed article's 100x100 one (models/autoencoder100.lua, 74,497; the
-- article trains it with Adam and BCE, timed here with the same RMSprop
-- and MSE step as the other so the two compare).
--
--   lua5.4 bench/train_step.lua [torch.txt]      (tools/run_bench.sh runs it)
--
-- Each case runs in its own interpreter (so its peak resident memory,
-- VmHWM, is its own): a warm-up, then the best of WH_BENCH_REPS (default 5)
-- timed repetitions; a training repetition is 3 steps, an inference one
-- 8 images.  Prints a table of images/s and peak memory; with the lines of
-- bench/peer_torch_train.py
--   torch case=train224 images_per_s=... best_ms=... peak_rss_mb=...
-- it adds PyTorch's figures and the ratio whorl / torch (> 1: whorl is
-- faster).  Run with OMP_WAIT_POLICY=passive on a shared machine.
local CASES = {
    { name = "train224", model = "autoencoder224", size = 224, batch = 16, train = true },
    { name = "train100", model = "autoencoder100", size = 100, batch = 16, train = true },
    { name = "infer224", model = "autoencoder224", size = 224, batch = 1, train = false },
    { name = "infer100", model = "autoencoder100", size = 100, batch = 1, train = false },
}
local REPS = tonumber(os.getenv("WH_BENCH_REPS") or "5")

local function peak_rss_mb()
    local f = io.open("/proc/self/status", "r")
    if not f then return 0 / 0 end
    local s = f:read("a")
    f:close()
    local kb = s:match("VmHWM:%s*(%d+)")
    return kb and tonumber(kb) / 1024 or 0 / 0
end

-- One case in this interpreter: prints "whorl case=... images_per_s=..."
local function run_case(case)
    local whorl = require "whorl"
    local nn = require "whorl.nn"
    local optim = require "whorl.optim"
    local model = require(case.model){ seed = 1 }
    whorl.manual_seed(1)
    local x = whorl.rand({ case.batch, 1, case.size, case.size })
    local per_rep, work
    if case.train then
        local loss_fn, opt = nn.losses.MSE(), optim.RMSprop(model)
        per_rep = 3
        work = function()
            for _ = 1, per_rep do
                opt:zero_grad()
                local loss = loss_fn(model(x), x)
                loss:backward()
                opt:step()
            end
        end
    else
        model:eval()
        per_rep = 8
        work = function()
            whorl.no_grad(function()
                for _ = 1, per_rep do model(x) end
            end)
        end
    end
    work() -- warm-up: caches, scratch buffers, first-touch pages
    local best = math.huge
    for _ = 1, REPS do
        collectgarbage()
        local t0 = whorl.clock()
        work()
        best = math.min(best, (whorl.clock() - t0) / per_rep)
    end
    io.write(string.format("whorl case=%s images_per_s=%.2f best_ms=%.3f peak_rss_mb=%.1f\n",
        case.name, case.batch / best, best * 1e3, peak_rss_mb()))
end

local function parse(line)
    local who, rest = line:match("^(%a+) (case=.*)$")
    if not who then return nil end
    local r = { who = who }
    for k, v in rest:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
    return r
end

local function main()
    if arg[1] == "--case" then
        for _, c in ipairs(CASES) do
            if c.name == arg[2] then return run_case(c) end
        end
        error("train_step: unknown case " .. tostring(arg[2]))
    end
    local torch = {}
    if arg[1] then
        local f = assert(io.open(arg[1], "r"), "train_step: cannot read " .. arg[1])
        for line in f:lines() do
            local r = parse(line)
            if r and r.who == "torch" then torch[r.case] = r end
        end
        f:close()
    end
    local self_path = debug.getinfo(1, "S").source:match("^@(.*)$")
    local interp = os.getenv("LUA") or "lua5.4"
    print(string.format("End-to-end: seed autoencoders, RMSprop + MSE training steps (batch 16) " ..
        "and batch-1 inference; best of %d; threads: OMP_NUM_THREADS=%s", REPS,
        os.getenv("OMP_NUM_THREADS") or "all"))
    print(string.format("%-9s %5s %12s %12s %9s %12s %12s", "case", "batch", "whorl img/s",
        "torch img/s", "ratio", "whorl MB", "torch MB"))
    for _, c in ipairs(CASES) do
        local p = io.popen(string.format("%s %s --case %s", interp, self_path, c.name))
        local out = p:read("a")
        local ok = p:close()
        local w = parse(out:match("[^\n]*") or "")
        if not ok or not w then error("train_step: case " .. c.name .. " failed:\n" .. out) end
        local t = torch[c.name]
        print(string.format("%-9s %5d %12.2f %12s %9s %12.1f %12s", c.name, c.batch, w.images_per_s,
            t and string.format("%.2f", t.images_per_s) or "-",
            t and string.format("%.2fx", w.images_per_s / t.images_per_s) or "-",
            w.peak_rss_mb, t and string.format("%.1f", t.peak_rss_mb) or "-"))
    end
    print("ratio = whorl images/s / torch images/s (> 1: whorl is faster); MB = peak resident " ..
        "memory (VmHWM) of the process that ran the case")
end

main()
