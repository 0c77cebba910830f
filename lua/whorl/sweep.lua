-- whorl.sweep: grid and random searches over the reconstruction job.
--
-- A sweep is described by a table (a Lua file returning it, or JSON):
--   base   = { size = 64, epochs = 4, ... }     options every run shares
--   grid   = { filters = {{16, 32}, {32, 64}}, kernel_size = {3, 5} }
--            every combination (keys in sorted order, the last varying fastest)
--   random = { samples = 8, seed = 1, space = {
--                lr = {min = 1e-4, max = 1e-2, log = true},   -- a range
--                epochs = {min = 2, max = 8, integer = true},
--                optimizer = {"adam", "rmsprop"} } }           -- choices
-- (grid or random, not both).  Option names are those of `whorl
-- reconstruct` with "_" for "-" (kernel_size -> --kernel-size); a list is
-- passed comma-separated, true as a bare flag, false not at all.
--
-- Each run lives in <out>/<name>, its name made from the options that vary
-- (sweep.run_name) and a hash of all of them, so the same configuration
-- always lands in the same folder.  sweep.run starts `whorl reconstruct ...
-- --out <dir> --quiet` for each run as a background process (log in
-- <dir>/log.txt, exit status in <dir>/exit_code when it ends) and polls:
--   metrics.json present          done, skipped next time
--   exit_code present, not done   failed: failed.json holds the exit status
--                                 and the log's tail; rerun with retry_failed
--   neither                       not run, or interrupted: started, or
--                                 resumed (--resume) from its checkpoint
--                                 when it has config.json and
--                                 model.safetensors (a killed run keeps
--                                 the epochs it finished)
-- Then results.csv, results.md (sorted by whole-image PSNR) and pareto.png /
-- pareto_time.png (parameters / training time against PSNR, Pareto front
-- marked, by whorl.plot).
local cjson = require "cjson"
local whorl = require "whorl"
local checkpoint = require "whorl.checkpoint"
local files = require "whorl.files"

local M = {}

local function fail(fmt, ...) error("whorl sweep: " .. string.format(fmt, ...), 0) end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    return keys
end

local function copy(t)
    local c = {}
    for k, v in pairs(t or {}) do c[k] = v end
    return c
end

local function is_list(v)
    return type(v) == "table" and #v > 0 and next(v, #v) == nil
end

-- ---- the description ------------------------------------------------------------------------

local SPEC_KEYS = { base = true, grid = true, random = true, name = true }
local RESERVED = { out = true, quiet = true, resume = true }

-- Checks a sweep description and returns it; errors name `where` (the file).
function M.check_spec(spec, where)
    where = where or "sweep"
    if type(spec) ~= "table" then fail("%s: the description must be a table, got %s", where, type(spec)) end
    for k in pairs(spec) do
        if not SPEC_KEYS[k] then
            fail("%s: unknown key '%s' (base, grid, random, name)", where, tostring(k))
        end
    end
    if spec.grid and spec.random then fail("%s: give grid or random, not both", where) end
    local function check_options(t, what)
        if t == nil then return end
        if type(t) ~= "table" or is_list(t) then fail("%s: %s must map option names to values", where, what) end
        for k in pairs(t) do
            if type(k) ~= "string" or not k:match("^[%a][%w_]*$") then
                fail("%s: %s has an invalid option name '%s'", where, what, tostring(k))
            end
            if RESERVED[k] then fail("%s: %s sets '%s', which the sweep sets itself", where, what, k) end
        end
    end
    check_options(spec.base, "base")
    check_options(spec.grid, "grid")
    for k, values in pairs(spec.grid or {}) do
        if not is_list(values) then fail("%s: grid.%s must be a non-empty list of values", where, k) end
    end
    if spec.random then
        local r = spec.random
        if type(r) ~= "table" then fail("%s: random must be a table {samples, seed, space}", where) end
        if math.type(r.samples) ~= "integer" or r.samples < 1 then
            fail("%s: random.samples must be a positive integer", where)
        end
        if r.seed ~= nil and math.type(r.seed) ~= "integer" then fail("%s: random.seed must be an integer", where) end
        check_options(r.space, "random.space")
        if r.space == nil or next(r.space) == nil then fail("%s: random.space is empty", where) end
        for k, d in pairs(r.space) do
            local range = type(d) == "table" and d.min ~= nil
            if range then
                if type(d.min) ~= "number" or type(d.max) ~= "number" or d.max < d.min then
                    fail("%s: random.space.%s needs numbers min <= max", where, k)
                end
                if d.log and d.min <= 0 then fail("%s: random.space.%s: log ranges need min > 0", where, k) end
            elseif not is_list(d) then
                fail("%s: random.space.%s must be a list of choices or {min =, max = [, log, integer]}", where, k)
            end
        end
    end
    return spec
end

-- Reads a sweep description from a .lua file (returning the table; it runs
-- with only math, string, table, pairs, ipairs available) or a .json file.
function M.load_spec(path)
    local f, err = io.open(path, "rb")
    if not f then fail("cannot read the sweep description %s: %s", path, tostring(err)) end
    local text = f:read("a")
    f:close()
    local spec
    if path:lower():match("%.json$") then
        local ok, v = pcall(cjson.decode, text)
        if not ok then fail("%s is not valid JSON: %s", path, tostring(v)) end
        spec = v
    else
        local env = { math = math, string = string, table = table, pairs = pairs, ipairs = ipairs }
        local chunk, lerr = load(text, "@" .. path, "t", env)
        if not chunk then fail("%s: %s", path, lerr) end
        local ok, v = pcall(chunk)
        if not ok then fail("%s: %s", path, tostring(v)) end
        spec = v
    end
    return M.check_spec(spec, path)
end

-- ---- configurations ---------------------------------------------------------------------------

-- Every combination of the grid's values: a list of option tables.
function M.expand_grid(grid)
    local configs = { {} }
    for _, key in ipairs(sorted_keys(grid or {})) do
        local next_configs = {}
        for _, c in ipairs(configs) do
            for _, v in ipairs(grid[key]) do
                local d = copy(c)
                d[key] = v
                next_configs[#next_configs + 1] = d
            end
        end
        configs = next_configs
    end
    return configs
end

-- splitmix64 (Steele, Lea, Flood 2014): a small generator of its own, so a
-- sweep's samples depend on its seed only, not on Lua's or whorl's state.
local function generator(seed)
    local state = seed
    return function()
        state = state + 0x9e3779b97f4a7c15
        local z = state
        z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
        z = (z ~ (z >> 27)) * 0x94d049bb133111eb
        z = z ~ (z >> 31)
        return (z >> 11) / 9007199254740992.0 -- 53 bits -> [0, 1)
    end
end

local function draw(d, u)
    if d.min == nil then return d[math.floor(u * #d) + 1] end
    local v
    if d.log then v = math.exp(math.log(d.min) + u * (math.log(d.max) - math.log(d.min)))
    else v = d.min + u * (d.max - d.min) end
    if d.integer then
        v = math.floor(v + 0.5)
        if v > d.max then v = math.floor(d.max) end
        return math.tointeger(v)
    end
    -- 4 significant digits: names and tables stay readable
    return tonumber(string.format("%.4g", v))
end

-- n option tables drawn from space (see the header), reproducible by seed.
function M.sample_random(space, n, seed)
    local u = generator(seed or 0)
    local keys, configs = sorted_keys(space), {}
    for i = 1, n do
        local c = {}
        for _, k in ipairs(keys) do c[k] = draw(space[k], u()) end
        configs[i] = c
    end
    return configs
end

-- Short names for the options run names show; other names lose their "_".
local ABBREV = { filters = "f", kernel_size = "k", batch_size = "b", epochs = "e", lr = "lr",
    seed = "s", size = "px", model = "", loss = "", optimizer = "" }

local function slug_value(v)
    if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = slug_value(x) end
        return table.concat(parts, ".")
    elseif type(v) == "number" then
        return math.type(v) == "integer" and tostring(v) or string.format("%g", v)
    elseif type(v) == "boolean" then
        return v and "on" or "off"
    end
    return tostring(v)
end

-- A folder name for a run: the values of `keys` (the options the sweep
-- varies), then 8 hex digits hashing every option, e.g.
-- "unet_f16.32_k5-3fa9c1d2".  Filesystem-safe ([A-Za-z0-9._-]) and at most
-- 60 characters; the same options always give the same name.
function M.run_name(options, keys)
    local parts = {}
    for _, k in ipairs(keys or {}) do
        if options[k] ~= nil then
            local abbrev = ABBREV[k] or k:gsub("_", "")
            parts[#parts + 1] = abbrev .. slug_value(options[k])
        end
    end
    local slug = table.concat(parts, "_"):gsub("%+", "-"):gsub("[^%w._-]", ""):sub(1, 50)
    local hash = string.format("%016x", whorl.hash64(checkpoint.json_encode(options, "options"))):sub(1, 8)
    return (slug ~= "" and slug .. "-" or "") .. hash
end

-- The runs of a description: {{name =, options =}, ...} in order, base
-- options merged under each configuration, duplicates (random draws can
-- repeat) dropped.  Also returns the varying keys.
function M.plan(spec)
    local configs, keys
    if spec.random then
        configs = M.sample_random(spec.random.space, spec.random.samples, spec.random.seed)
        keys = sorted_keys(spec.random.space)
    else
        configs = M.expand_grid(spec.grid)
        keys = sorted_keys(spec.grid or {})
    end
    local runs, seen = {}, {}
    for _, c in ipairs(configs) do
        local options = copy(spec.base)
        for k, v in pairs(c) do options[k] = v end
        local name = M.run_name(options, keys)
        if not seen[name] then
            seen[name] = true
            runs[#runs + 1] = { name = name, options = options }
        end
    end
    return runs, keys
end

-- A number as the shortest text that reads back as the same number.
local function number_text(v)
    if math.type(v) == "integer" then return tostring(v) end
    for digits = 6, 17 do
        local s = string.format("%." .. digits .. "g", v)
        if tonumber(s) == v then return s end
    end
    return string.format("%.17g", v)
end

local function flag_value(v)
    if type(v) == "table" then
        local items = {}
        for i, x in ipairs(v) do items[i] = flag_value(x) end
        return table.concat(items, ",")
    end
    return type(v) == "number" and number_text(v) or tostring(v)
end

-- The command-line flags of an option table, in sorted order.
function M.flags(options)
    local argv = {}
    for _, k in ipairs(sorted_keys(options)) do
        local v = options[k]
        if v ~= false then argv[#argv + 1] = "--" .. k:gsub("_", "-") end
        if v ~= true and v ~= false then argv[#argv + 1] = flag_value(v) end
    end
    return argv
end

-- ---- running ---------------------------------------------------------------------------------

local exists, read_all = files.exists, files.read

local function write_atomically(path, text) files.write_atomic(path, text, "whorl sweep") end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function mkdir(path)
    if not os.execute("mkdir -p " .. quote(path)) then fail("cannot create the folder %s", path) end
end

local function cores()
    local p = io.popen("nproc 2>/dev/null")
    local n = p and p:read("n")
    if p then p:close() end
    return math.tointeger(n) or 1
end

-- The command that runs the job: bin/whorl of this checkout when there is
-- one (found from this file's path), else `whorl` on the PATH.
function M.default_command()
    local src = debug.getinfo(1, "S").source:match("^@(.*)$") or ""
    local root = src:match("^(.*)/lua/whorl/sweep%.lua$") or (src == "lua/whorl/sweep.lua" and ".")
    if root and exists(root .. "/bin/whorl") then return "lua5.4 " .. quote(root .. "/bin/whorl") end
    return "whorl"
end

local function tail(text, lines)
    local all = {}
    for line in (text or ""):gmatch("[^\n]+") do all[#all + 1] = line end
    return table.concat(all, "\n", math.max(1, #all - lines + 1), #all)
end

local function read_json(path)
    local ok, v = pcall(cjson.decode, read_all(path) or "")
    return ok and type(v) == "table" and v or nil
end

-- "done" (metrics.json exists), "failed" (the job ended without one) or
-- "new" (never run, or interrupted before it ended).
function M.state(dir)
    if exists(dir .. "/metrics.json") then return "done" end
    if exists(dir .. "/exit_code") then return "failed" end
    return "new"
end

-- An interrupted run that can go on from its last epoch: the job wrote
-- config.json before training and model.safetensors after each epoch.
function M.resumable(dir)
    return M.state(dir) == "new" and exists(dir .. "/config.json") and exists(dir .. "/model.safetensors")
end

-- After a run's process ended: failed.json (exit status, log tail) when it
-- did not finish.  Returns the state.
local function record(dir)
    local state = M.state(dir)
    if state == "failed" and not exists(dir .. "/failed.json") then
        local code = tonumber(read_all(dir .. "/exit_code") or "")
        local log = tail(read_all(dir .. "/log.txt"), 20)
        if code == 0 then log = log .. "\n(exited 0 without writing metrics.json)" end
        write_atomically(dir .. "/failed.json", cjson.encode({ exit_code = code, log_tail = log }) .. "\n")
    end
    return state
end

-- The process group of a run started earlier (its pid file), when it is
-- still alive: a sweep called again while runs of the last call go on
-- waits for them instead of starting them twice.
--
-- A finished run's shell can linger as a zombie when nothing reaps it (a
-- container whose init does not), and kill -0 counts zombies as alive: on
-- Linux the group is alive when /proc shows a member that is not a zombie.
local function group_has_live_member(pgid)
    local probe = io.open("/proc/self/stat")
    if probe then probe:close() end
    local p = probe and io.popen("cat /proc/[0-9]*/stat 2>/dev/null")
    if not p then return os.execute(string.format("kill -s 0 -- -%d 2>/dev/null", pgid)) and true or false end
    local alive = false
    for line in p:lines() do
        -- pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        local state, pgrp = line:match(".*%) (%S+) %S+ (%S+)")
        if tonumber(pgrp) == pgid and state ~= "Z" and state ~= "X" then alive = true end
    end
    p:close()
    return alive
end

local function alive_group(dir)
    local pid = math.tointeger(tonumber(read_all(dir .. "/pid") or ""))
    if pid and pid > 1 and group_has_live_member(pid) then return pid end
    return nil
end

-- Starts one run in the background, in a process group of its own (so it
-- can be stopped as a whole): run.sh holds the command (run it by hand to
-- repeat the run), the job's output goes to log.txt, its exit status to
-- exit_code (written last, through a rename), the group's id to pid.
local function launch(run, dir, command, threads)
    mkdir(dir)
    os.remove(dir .. "/exit_code")
    os.remove(dir .. "/failed.json")
    local argv = M.flags(run.options)
    if run.resume then argv[#argv + 1] = "--resume" end
    for i, a in ipairs(argv) do argv[i] = quote(a) end
    local d = quote(dir)
    write_atomically(dir .. "/run.sh", string.format("#!/bin/sh\n# %s, started by whorl sweep\n" ..
        "OMP_NUM_THREADS=%d OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} %s reconstruct %s --out %s --quiet " ..
        "> %s/log.txt 2>&1\necho $? > %s/exit_code.tmp && mv %s/exit_code.tmp %s/exit_code\n",
        run.name, threads, command, table.concat(argv, " "), d, d, d, d, d))
    os.execute(string.format("setsid sh %s/run.sh < /dev/null > /dev/null 2>&1 & echo $! > %s/pid", d, d))
end

local function summary_line(dir, state)
    if state == "done" then
        local m = read_json(dir .. "/metrics.json") or {}
        local psnr = m.whole and m.whole.restored and m.whole.restored.psnr
        return string.format("done%s%s", psnr and string.format(", PSNR %.2f dB", psnr) or "",
            m.train_seconds and string.format(", trained in %.0f s", m.train_seconds) or "")
    end
    local f = read_json(dir .. "/failed.json") or {}
    return string.format("FAILED (exit %s): %s", f.exit_code and flag_value(f.exit_code) or "?",
        tail(f.log_tail, 1):sub(1, 160))
end

-- Starts queued runs while fewer than `workers` go on, sleeps `poll`
-- seconds, and reports the runs that ended, until all have.  running
-- holds runs already going (adopted from an earlier call).
local function drive(out, queue, running, workers, command, threads, poll, say)
    local started, finished, failed, total = 0, 0, 0, #queue + #running
    while started < #queue or #running > 0 do
        while started < #queue and #running < workers do
            started = started + 1
            local run = queue[started]
            launch(run, out .. "/" .. run.name, command, threads)
            running[#running + 1] = run
            say(string.format("%s %s", run.resume and "resume" or "start", run.name))
        end
        -- system() ignores Ctrl-C in the caller; the sleep it waits for dies of it
        local _, how = os.execute("sleep " .. poll)
        if how == "signal" then error("whorl sweep: interrupted", 0) end
        for i = #running, 1, -1 do
            local run = running[i]
            local dir = out .. "/" .. run.name
            if exists(dir .. "/exit_code") or not alive_group(dir) then
                table.remove(running, i)
                finished = finished + 1
                local state = record(dir)
                if state ~= "done" then failed = failed + 1 end
                say(string.format("[%d/%d] %s: %s", finished, total, run.name,
                    state == "new" and "stopped without an exit status (killed?)" or summary_line(dir, state)))
            end
        end
    end
    return failed
end

-- Runs a sweep: spec is a description (see the header).  opts: out (the
-- sweep folder), workers (1), threads (OpenMP threads per run; default
-- max(1, cores / workers)), retry_failed, command (how to start whorl),
-- poll (seconds between checks, 1), say (progress lines; default print).
-- Interrupted (Ctrl-C), it stops the runs it started before passing the
-- error on.  Returns {runs, rows, keys, ran, skipped, failed}.
function M.run(spec, opts)
    M.check_spec(spec, opts.where)
    local out, workers = opts.out, opts.workers or 1
    if type(out) ~= "string" or out == "" then fail("the sweep needs an output folder (--out)") end
    if math.type(workers) ~= "integer" or workers < 1 then fail("workers must be a positive integer") end
    local threads = opts.threads or math.max(1, cores() // workers)
    local command, poll, say = opts.command or M.default_command(), opts.poll or 1, opts.say or print
    mkdir(out)
    local runs, keys = M.plan(spec)
    write_atomically(out .. "/sweep.json", checkpoint.json_encode(spec, "sweep") .. "\n")

    local queue, running, skipped = {}, {}, 0
    for _, run in ipairs(runs) do
        local dir = out .. "/" .. run.name
        local state = record(dir)
        if state == "new" and alive_group(dir) then
            running[#running + 1] = run
            say(string.format("wait  %s: still running from an earlier call", run.name))
        elseif state == "new" or (state == "failed" and opts.retry_failed) then
            -- a failed run starts afresh: its checkpoint may be what failed
            run.resume = state == "new" and M.resumable(dir)
            queue[#queue + 1] = run
        else
            skipped = skipped + 1
            say(string.format("skip  %s: %s", run.name, state == "done" and "already done" or
                "failed before (--retry-failed runs it again)"))
        end
    end
    say(string.format("%d runs: %d to run with %d worker%s (%d thread%s each), %d skipped", #runs, #queue,
        workers, workers == 1 and "" or "s", threads, threads == 1 and "" or "s", skipped))

    local ok, failed = pcall(drive, out, queue, running, workers, command, threads, poll, say)
    if not ok then
        for _, run in ipairs(running) do
            local pid = alive_group(out .. "/" .. run.name)
            if pid then os.execute(string.format("kill -s TERM -- -%d 2>/dev/null", pid)) end
        end
        error(failed, 0)
    end
    local rows = M.collect(out, runs)
    M.write_results(out, rows, keys)
    return { runs = runs, rows = rows, keys = keys, ran = #queue, skipped = skipped, failed = failed }
end

-- ---- results ---------------------------------------------------------------------------------

local function dig(t, ...)
    for _, k in ipairs({ ... }) do
        if type(t) ~= "table" then return nil end
        t = t[k]
    end
    return type(t) == "number" and t or nil
end

-- One row per run: name, options, status ("done", "failed", "not run"),
-- params, train_seconds, psnr/ssim (whole image, restored), region_psnr/
-- region_ssim (damaged pixels), damaged_psnr/damaged_region_psnr (the
-- inputs' scores, the baseline), and for failures exit_code and error
-- (the log's last line).  Sorted by whole-image PSNR, best first, then
-- failures, then runs not run.
function M.collect(out, runs)
    local rows = {}
    for _, run in ipairs(runs) do
        local dir = out .. "/" .. run.name
        local row = { name = run.name, options = run.options, status = "not run" }
        if exists(dir .. "/metrics.json") then
            local m = read_json(dir .. "/metrics.json")
            if m then
                row.status = "done"
                row.params, row.train_seconds = dig(m, "params"), dig(m, "train_seconds")
                row.psnr, row.ssim = dig(m, "whole", "restored", "psnr"), dig(m, "whole", "restored", "ssim")
                row.region_psnr = dig(m, "region", "restored", "psnr")
                row.region_ssim = dig(m, "region", "restored", "ssim")
                row.damaged_psnr = dig(m, "whole", "damaged", "psnr")
                row.damaged_region_psnr = dig(m, "region", "damaged", "psnr")
                -- identity, when the job could measure it (whorl.fingerprint)
                row.eer, row.damaged_eer = dig(m, "identity", "eer", "restored"), dig(m, "identity", "eer", "damaged")
                row.minutiae_precision = dig(m, "identity", "minutiae", "restored", "precision")
                row.minutiae_recall = dig(m, "identity", "minutiae", "restored", "recall")
            else
                row.status, row.error = "failed", "metrics.json is not valid JSON"
            end
        elseif exists(dir .. "/exit_code") then
            local f = read_json(dir .. "/failed.json") or {}
            row.status, row.exit_code = "failed", f.exit_code
            row.error = tail(f.log_tail, 1)
        end
        rows[#rows + 1] = row
    end
    local rank = { done = 1, failed = 2, ["not run"] = 3 }
    table.sort(rows, function(a, b)
        if a.status ~= b.status then return rank[a.status] < rank[b.status] end
        local pa, pb = a.psnr or -math.huge, b.psnr or -math.huge
        if pa ~= pb then return pa > pb end
        return a.name < b.name
    end)
    return rows
end

local METRIC_COLUMNS = { "params", "train_seconds", "psnr", "ssim", "region_psnr", "region_ssim",
    "damaged_psnr", "damaged_region_psnr", "eer", "damaged_eer", "minutiae_precision", "minutiae_recall",
    "exit_code" }

local function csv_field(v)
    v = v == nil and "" or flag_value(v)
    if v:find('[",\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
    return v
end

-- results.csv: every option and metric of every run.
function M.csv(rows)
    local keyset = {}
    for _, r in ipairs(rows) do for k in pairs(r.options) do keyset[k] = true end end
    local keys = sorted_keys(keyset)
    local header = { "name", "status" }
    for _, k in ipairs(keys) do header[#header + 1] = k end
    for _, k in ipairs(METRIC_COLUMNS) do header[#header + 1] = k end
    header[#header + 1] = "error"
    local lines = { table.concat(header, ",") }
    for _, r in ipairs(rows) do
        local f = { csv_field(r.name), csv_field(r.status) }
        for _, k in ipairs(keys) do f[#f + 1] = csv_field(r.options[k]) end
        for _, k in ipairs(METRIC_COLUMNS) do f[#f + 1] = csv_field(r[k]) end
        f[#f + 1] = csv_field(r.error)
        lines[#lines + 1] = table.concat(f, ",")
    end
    return table.concat(lines, "\n") .. "\n"
end

local function fmt(pattern, v) return v and string.format(pattern, v) or "-" end

local function md_cell(v)
    return (v == nil and "-" or flag_value(v)):gsub("|", "\\|"):gsub("\n", " ")
end

-- results.md: a table of the runs, best whole-image PSNR first; `keys`
-- are the option columns shown (the ones the sweep varies).
function M.markdown(rows, keys, title)
    local with_eer = false -- the identity column, when any run measured it
    for _, r in ipairs(rows) do with_eer = with_eer or r.eer ~= nil end
    local head = { "#", "run" }
    for _, k in ipairs(keys) do head[#head + 1] = k end
    for _, h in ipairs({ "params", "train s", "PSNR whole", "SSIM whole", "PSNR region", "SSIM region" }) do
        head[#head + 1] = h
    end
    if with_eer then head[#head + 1] = "EER" end
    local out = { "# " .. (title or "Sweep results"), "",
        "Restored test prints against their clean originals: whole image and damaged region only " ..
        "(PSNR in dB)" .. (with_eer and "; EER: equal error rate of matching the restored prints " ..
        "(whorl.fingerprint), lower is better" or "") .. ".", "", "| " .. table.concat(head, " | ") .. " |",
        "|" .. string.rep("---|", #head) }
    local done, base = 0, nil
    for _, r in ipairs(rows) do
        if r.status == "done" then
            done = done + 1
            base = base or (r.damaged_psnr and r)
            local cells = { tostring(done), "`" .. r.name .. "`" }
            for _, k in ipairs(keys) do cells[#cells + 1] = md_cell(r.options[k]) end
            for _, c in ipairs({ fmt("%.0f", r.params), fmt("%.1f", r.train_seconds), fmt("%.2f", r.psnr),
                fmt("%.3f", r.ssim), fmt("%.2f", r.region_psnr), fmt("%.3f", r.region_ssim) }) do
                cells[#cells + 1] = c
            end
            if with_eer then cells[#cells + 1] = fmt("%.3f", r.eer) end
            out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |"
        end
    end
    if base then
        out[#out + 1] = ""
        out[#out + 1] = string.format("Damaged inputs (no restoration), first run's test set: PSNR whole " ..
            "%s dB, region %s dB%s.", fmt("%.2f", base.damaged_psnr), fmt("%.2f", base.damaged_region_psnr),
            base.damaged_eer and ", EER " .. fmt("%.3f", base.damaged_eer) or "")
    end
    local others = {}
    for _, r in ipairs(rows) do
        if r.status ~= "done" then
            others[#others + 1] = string.format("- `%s`: %s%s%s", r.name, r.status,
                r.exit_code and " (exit " .. flag_value(r.exit_code) .. ")" or "",
                r.error and r.error ~= "" and ": " .. md_cell(r.error) or "")
        end
    end
    if #others > 0 then
        out[#out + 1] = ""
        out[#out + 1] = "Not finished:"
        out[#out + 1] = ""
        for _, line in ipairs(others) do out[#out + 1] = line end
    end
    return table.concat(out, "\n") .. "\n"
end

-- Indices of the points no other point beats in both coordinates
-- (dirs: {x = "min"|"max", y = "min"|"max"}), sorted by x: whorl.plot's.
function M.pareto(points, dirs) return require("whorl.plot").pareto_front(points, dirs) end

-- The finished runs as points (x from the row field `xkey`, y = PSNR).
function M.points(rows, xkey)
    local points = {}
    for _, r in ipairs(rows) do
        if r.status == "done" and r[xkey] and r.psnr then
            -- labelled without the hash, which tells runs apart but not people
            points[#points + 1] = { x = r[xkey], y = r.psnr, label = (r.name:gsub("%-%x+$", "")) }
        end
    end
    return points
end

-- results.csv, results.md and, when the finished runs differ in parameters
-- (training time), pareto.png (pareto_time.png): PSNR against it, the
-- Pareto front marked.  Returns the paths written.
function M.write_results(out, rows, keys, title)
    write_atomically(out .. "/results.csv", M.csv(rows))
    write_atomically(out .. "/results.md", M.markdown(rows, keys, title))
    local written = { out .. "/results.csv", out .. "/results.md" }
    local plot = require "whorl.plot"
    for _, fig in ipairs({ { "params", "pareto.png", "parameters", true },
        { "train_seconds", "pareto_time.png", "training time (s)", false } }) do
        local points = M.points(rows, fig[1])
        local spread = false -- one x for every run (a sweep that keeps the model) says nothing
        for _, pt in ipairs(points) do spread = spread or pt.x ~= points[1].x end
        if spread then
            plot.scatter{ path = out .. "/" .. fig[2], title = "Sweep: restored PSNR against " .. fig[3],
                xlabel = fig[3], ylabel = "PSNR, whole image (dB)", points = points, logx = fig[4],
                pareto = { x = "min", y = "max" } }
            written[#written + 1] = out .. "/" .. fig[2]
        else
            os.remove(out .. "/" .. fig[2]) -- not one left from an earlier call
        end
    end
    return written
end

return M
