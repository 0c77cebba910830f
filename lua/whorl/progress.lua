-- Keras 3's progress bar (keras/src/utils/progbar.py), line for line:
--
--   Epoch 3/200
--   17/17 ━━━━━━━━━━━━━━━━━━━━ 2s 104ms/step - loss: 0.0065 - val_loss: 0.0063
--
-- verbose 1 on a terminal redraws the line in place (\r) while the epoch
-- runs: bold step count, a green filled part, the ETA until the end, then
-- the elapsed seconds when done.  verbose 1 elsewhere (a pipe, a CI log)
-- prints only the finished line, without colours, once per epoch; verbose 2
-- prints Keras' compact form "17/17 - 2s - 104ms/step - loss: ..."; 0 prints
-- nothing.
--
-- Whether stdout is a terminal: `test -t 1` run once through os.execute
-- (the child inherits fd 1; Lua itself has no isatty, and io.stdout:seek
-- fails alike on terminals and pipes).  WHORL_PROGRESS=live or =plain
-- overrides the detection.
--
-- Numbers as Keras formats them: a value above 1e-3 in magnitude with 4
-- decimals, smaller ones as 1.2345e-04; time per step in s, ms or us from
-- the steps after the first (the first one includes warm-up), the elapsed
-- time rounded to whole seconds.
local whorl = require "whorl"

local M = {}

local BAR = "━"
local WIDTH = 20
local INTERVAL = 0.05 -- seconds between redraws of a live line

local tty_cache
function M.stdout_is_tty()
    local forced = os.getenv("WHORL_PROGRESS")
    if forced == "live" then return true end
    if forced == "plain" then return false end
    if tty_cache == nil then tty_cache = os.execute("test -t 1") == true end
    return tty_cache
end

function M.format_value(v)
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    if math.abs(v) > 1e-3 then return string.format("%.4f", v) end
    return string.format("%.4e", v)
end

function M.format_time(per_step, unit)
    unit = unit or "step"
    if per_step >= 1 or per_step == 0 then return string.format(" %.0fs/%s", per_step, unit) end
    if per_step >= 1e-3 then return string.format(" %.0fms/%s", per_step * 1e3, unit) end
    return string.format(" %.0fus/%s", per_step * 1e6, unit)
end

local function format_eta(eta)
    eta = math.floor(eta)
    if eta > 3600 then
        return string.format("%d:%02d:%02d", eta // 3600, (eta % 3600) // 60, eta % 60)
    elseif eta > 60 then
        return string.format("%d:%02d", eta // 60, eta % 60)
    end
    return string.format("%ds", math.floor(eta))
end

-- " - loss: 0.0065 - val_loss: 0.0063" from {{"loss", 0.0065}, ...}
function M.format_values(values)
    local parts = {}
    for i, kv in ipairs(values) do
        parts[i] = string.format(" - %s: %s", kv[1], M.format_value(kv[2]))
    end
    return table.concat(parts)
end

local Bar = {}
Bar.__index = Bar

-- opts: target (steps, nil when unknown), verbose (0, 1, 2), live (redraw
-- in place; default: stdout is a terminal), out (a file, io.stdout), clock
-- (a function giving seconds; whorl.clock).
function M.new(opts)
    local self = setmetatable({
        target = opts.target,
        verbose = opts.verbose == nil and 1 or opts.verbose,
        out = opts.out or io.stdout,
        clock = opts.clock or whorl.clock,
        prev_width = 0,
    }, Bar)
    if opts.live == nil then
        self.live = self.out == io.stdout and M.stdout_is_tty()
    else
        self.live = opts.live and true or false
    end
    self.start = self.clock()
    self.last_draw = -math.huge
    return self
end

-- Keras' _estimate_step_duration: after the first step, time from the end
-- of step 1 over the steps since.
function Bar:step_time(current, now)
    if current <= 0 then return 0 end
    local per
    if self.after_first and current > 1 then
        per = (now - self.after_first) / (current - 1)
    else
        per = (now - self.start) / current
    end
    if current == 1 and not self.after_first then self.after_first = now end
    return per
end

local function visible_width(s)
    return utf8.len((s:gsub("\27%[[%d;]*m", ""))) or #s
end

-- current: steps done; values: {{name, number}, ...}; finalize: the last
-- call of the bar (adds the validation values and ends the line).
function Bar:update(current, values, finalize)
    local now = self.clock()
    local per = self:step_time(current, now)
    if self.verbose == 0 then return end
    local target = self.target
    if self.verbose == 2 then
        if not finalize then return end
        local count = target and string.format("%" .. (#tostring(target)) .. "d/%d", current, target)
            or tostring(current)
        self.out:write(string.format("%s - %.0fs -%s%s\n", count, now - self.start,
            M.format_time(per), M.format_values(values)))
        self.out:flush()
        return
    end
    if not self.live and not finalize then return end
    if self.live and not finalize and now - self.last_draw < INTERVAL then return end
    self.last_draw = now
    local live = self.live
    local function style(code, s) return live and ("\27[" .. code .. "m" .. s .. "\27[0m") or s end
    local line
    if target then
        local count = string.format("%" .. (#tostring(target)) .. "d/%d", current, target)
        local filled = math.floor(WIDTH * current / target)
        if filled > WIDTH then filled = WIDTH end
        line = style("1", count) .. " "
        if filled > 0 then line = line .. style("32", BAR:rep(filled)) end
        line = line .. style("37", BAR:rep(WIDTH - filled))
    else
        line = string.format("%7d/Unknown", current)
    end
    if target and not finalize then
        line = line .. " " .. style("1", format_eta(per * (target - current)))
    else
        line = line .. " " .. style("1", string.format("%.0fs", now - self.start))
    end
    line = line .. M.format_time(per) .. M.format_values(values)
    if live then
        local width = visible_width(line)
        local pad = self.prev_width > width and string.rep(" ", self.prev_width - width) or ""
        self.prev_width = width
        self.out:write("\r" .. line .. pad .. (finalize and "\n" or ""))
    else
        self.out:write(line .. "\n")
    end
    self.out:flush()
end

return M
