-- Damage drawn afresh every epoch: a dataset for whorl.fit whose inputs are
-- clean prints damaged on the fly by whorl.synth.damage, and whose targets
-- are the clean prints, so a restoring model never sees the same damage
-- twice (the frozen alternative is to call whorl.synth.damage once).
--
--   local augment = require "whorl.augment"
--   local train = augment.damaged(clean, {kinds = "random", level = "random", seed = 13})
--   whorl.fit{model = m, train = train, ...}
--
-- clean: (N, 1, H, W) float32.  Options: kinds (a damage name, a list of
-- names or "random"), level ("easy", "medium", "hard", a list or "random"),
-- seed, with_mask (false: batches give x, y; true: x, y, mask as the loss
-- weight, so the loss counts only damaged pixels).  Batch b of epoch e is
-- damaged with seed mix(seed, e, b): the same (seed, epoch) gives the same
-- batches, which is what fit's bit-exact resume needs.
local whorl = require "whorl"
local core_data = require("whorl.core")._data

local M = {}

local Damaged = {}
Damaged.__index = Damaged

function M.damaged(clean, opts)
    opts = opts or {}
    if not whorl.is_tensor(clean) or clean:dim() ~= 4 or clean:size()[2] ~= 1 then
        error("augment.damaged: clean must be an (N, 1, H, W) tensor", 2)
    end
    for k in pairs(opts) do
        if k ~= "kinds" and k ~= "level" and k ~= "seed" and k ~= "with_mask" then
            error("augment.damaged: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    return setmetatable({clean = clean, n = clean:size()[1], kinds = opts.kinds or "random",
        level = opts.level or "random", seed = opts.seed or 0, with_mask = opts.with_mask or false}, Damaged)
end

function Damaged:size() return self.n end
Damaged.__len = Damaged.size

local function gather(t, order, from, to)
    local parts = {}
    for i = from, to do parts[#parts + 1] = t:narrow(1, order[i], 1) end
    return whorl.cat(parts, 1)
end

function Damaged:batches(batch_size, opts)
    opts = opts or {}
    local n, epoch, seed = self.n, opts.epoch or 0, opts.seed or self.seed
    local order = opts.shuffle and core_data.permutation(n, core_data.seed_mix(seed, epoch)) or nil
    local at, b = 0, 0
    return function()
        if at >= n then return nil end
        local size = math.min(batch_size, n - at)
        local y = order and gather(self.clean, order, at + 1, at + size) or self.clean:narrow(1, at + 1, size)
        b = b + 1
        at = at + size
        local damage_seed = core_data.seed_mix(core_data.seed_mix(self.seed, epoch), b)
        local x, mask = whorl.synth.damage(y, self.kinds, {level = self.level, seed = damage_seed})
        if self.with_mask then return x, y, mask end
        return x, y
    end
end

return M
