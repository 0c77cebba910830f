-- A sweep of reconstruction runs: a grid or random search over the options
-- of `whorl reconstruct`, each run in its own folder, N at a time.
--
--   bin/whorl sweep experiments/sweeps/filters.lua --out out/sweep-filters --workers 2
--   bin/whorl sweep SPEC --out DIR --dry-run          (the runs and their commands)
--
-- SPEC is a Lua file returning {base =, grid =} or {base =, random =} (or
-- the same as JSON); see lua/whorl/sweep.lua and docs/sweep.md.  Running it
-- again skips finished runs (their metrics.json exists) and runs that
-- failed (unless --retry-failed), so an interrupted sweep just goes on.
-- Results: DIR/results.csv, DIR/results.md (best whole-image PSNR first),
-- DIR/pareto.png and DIR/pareto_time.png.
local argparse = require "argparse"
local sweep = require "whorl.sweep"

local function integer(s) return math.tointeger(tonumber(s)) end

local parser = argparse("whorl sweep", "Run a grid or random search over the reconstruction job.")
parser:argument("spec", "Sweep description: a .lua file returning a table, or a .json file.")
parser:option("--out", "Sweep folder (one subfolder per run)."):args(1)
parser:option("--workers", "Runs at the same time.", "1", integer)
parser:option("--threads", "OpenMP threads per run (default: cores / workers, at least 1).", nil, integer)
parser:option("--samples", "Random search: override the number of samples.", nil, integer)
parser:option("--seed", "Random search: override the sampling seed.", nil, integer)
parser:option("--poll", "Seconds between checks for finished runs.", "1", tonumber)
parser:option("--command", "How to start whorl (default: this checkout's bin/whorl).")
parser:flag("--retry-failed", "Run the runs that failed before again.")
parser:flag("--dry-run", "Print the runs and their commands; start nothing.")
local args = parser:parse(arg)

if not args.out then error("whorl sweep: --out DIR is required (the sweep folder)", 0) end
if not args.workers or args.workers < 1 then error("whorl sweep: --workers must be a positive integer", 0) end
if args.poll == nil or args.poll <= 0 then error("whorl sweep: --poll must be a positive number", 0) end
local spec = sweep.load_spec(args.spec)
if args.samples or args.seed then
    if not spec.random then error("whorl sweep: --samples and --seed apply to random searches only", 0) end
    spec.random.samples = args.samples or spec.random.samples
    spec.random.seed = args.seed or spec.random.seed
    sweep.check_spec(spec, args.spec)
end

if args.dry_run then
    local runs = sweep.plan(spec)
    for i, run in ipairs(runs) do
        print(string.format("%3d  %s\n     whorl reconstruct %s --out %s/%s --quiet  [%s]", i, run.name,
            table.concat(sweep.flags(run.options), " "), args.out, run.name,
            sweep.state(args.out .. "/" .. run.name)))
    end
    return
end

local result = sweep.run(spec, { out = args.out, workers = args.workers, threads = args.threads,
    retry_failed = args.retry_failed, command = args.command, poll = args.poll, where = args.spec })
local done = 0
for _, r in ipairs(result.rows) do
    if r.status == "done" then done = done + 1 end
end
print(string.format("\n%d of %d runs done; results in %s/results.md and results.csv", done, #result.rows, args.out))
local best = result.rows[1]
if best and best.status == "done" and best.psnr then
    print(string.format("best: %s (PSNR %.2f dB whole, %s dB region)", best.name, best.psnr,
        best.region_psnr and string.format("%.2f", best.region_psnr) or "-"))
end
local left = #result.rows - done
if left > 0 then
    error(string.format("whorl sweep: %d run%s failed or did not finish (see results.md; calling again " ..
        "goes on, --retry-failed runs the failed ones again)", left, left == 1 and "" or "s"), 0)
end
