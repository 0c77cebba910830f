-- whorl.augment.damaged: damage drawn afresh per epoch, reproducible per
-- (seed, epoch), targets are the clean prints, usable by whorl.fit.
local whorl = require "whorl"
local augment = require "whorl.augment"
local nn = require "whorl.nn"
local optim = require "whorl.optim"

local clean = whorl.synth.batch{count = 6, size = 24, seed = 2, info = false}

local function collect(ds, epoch)
    local xs, ys, ms = {}, {}, {}
    for x, y, m in ds:batches(4, {shuffle = true, seed = 5, epoch = epoch}) do
        xs[#xs + 1], ys[#ys + 1], ms[#ms + 1] = x, y, m
    end
    return whorl.cat(xs, 1), whorl.cat(ys, 1), ms[1] and whorl.cat(ms, 1)
end

describe("augment.damaged", function()
    it("gives the same batches for the same epoch and new damage for the next", function()
        local ds = augment.damaged(clean, {seed = 5, with_mask = true})
        assert.are.equal(6, #ds)
        local x1, y1, m1 = collect(ds, 1)
        local x1b = collect(ds, 1)
        local x2, y2 = collect(ds, 2)
        assert.are.equal(x1:bytes(), x1b:bytes())
        assert.is_true((x1 - x2):abs():max():item() > 0.1)
        -- targets are clean prints (a permutation of them): same total either epoch
        assert.is_true(math.abs(y1:sum():item() - clean:sum():item()) < 1e-2)
        assert.is_true(math.abs(y2:sum():item() - clean:sum():item()) < 1e-2)
        -- outside the mask the input is the clean target
        assert.is_true(((x1 - y1):abs() * (1 - m1)):max():item() < 1e-6)
        assert.is_true(m1:sum():item() > 0)
    end)

    it("trains with whorl.fit", function()
        nn.clear_session()
        local model = nn.Sequential{nn.Conv2d(1, 4, 3, {padding = "same", activation = "relu"}),
                                    nn.Conv2d(4, 1, 3, {padding = "same", activation = "sigmoid"})}
        local history = whorl.fit{model = model, loss = nn.losses.MSE(), optimizer = optim.Adam(model, {lr = 0.01}),
            train = augment.damaged(clean, {seed = 1}), batch_size = 3, epochs = 3, seed = 1, verbose = 0}
        assert.are.equal(3, #history.loss)
        assert.is_true(history.loss[3] < history.loss[1])
    end)

    it("refuses other layouts and unknown options", function()
        assert.has_error(function() augment.damaged(whorl.zeros(2, 3, 8, 8)) end)
        assert.has_error(function() augment.damaged(clean, {levle = "hard"}) end)
    end)
end)
