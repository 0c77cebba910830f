-- models/autoencoder100.lua, models/unet.lua and models/masked.lua: shapes,
-- parameter counts by hand, config round trips, whorl.save/load rebuilds,
-- the U-Net's skips, the masked model's composite and a short fit.
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local augment = require "whorl.augment"
local cjson = require "cjson"
local autoencoder100 = require "autoencoder100"
local unet = require "unet"
local masked = require "masked"
local check = require "helpers.check"
local max_diff, raises = check.max_diff, check.raises

local tmpdir
setup(function()
    local p = io.popen("mktemp -d")
    tmpdir = p:read("l")
    p:close()
end)
teardown(function()
    if tmpdir then os.execute("rm -rf '" .. tmpdir .. "'") end
end)

-- conv k x k from cin to cout (+ bias)
local function conv(cin, cout, k, bias) return cin * cout * k * k + (bias == false and 0 or cout) end

-- config -> JSON -> from_config, weights copied: same outputs
local function round_trip(m, x)
    m:eval()
    local copy = nn.from_config(cjson.decode(cjson.encode(m:config())))
    copy:load_state_dict(m:state_dict())
    copy:eval()
    assert.are.equal(m.name, copy.name)
    assert.are.same(m:parameter_names(), copy:parameter_names())
    assert.are.equal(0, max_diff(m(x), copy(x)))
end

-- whorl.save, then whorl.load in a fresh interpreter that never requires the
-- model's script (models/ is only on the path, as for any checkpoint user)
local function fresh_load(m, x, file)
    m:eval()
    local path = tmpdir .. "/" .. file
    whorl.save(m, path)
    local want = whorl.predict(m, x)
    local ck_in = tmpdir .. "/in_" .. file
    require("whorl.checkpoint").write(ck_in, { { "x", x } })
    local script = tmpdir .. "/load.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
        local whorl = require "whorl"
        local m = whorl.load(arg[1])
        local x = require("whorl.checkpoint").read(arg[2]).tensors.x
        io.write(string.format("%016x %s %d", whorl.hash64(whorl.predict(m, x):bytes()), m.name,
            m:count_params()))
    ]])
    f:close()
    local p = io.popen(string.format("LUA_PATH='lua/?.lua;lua/?/init.lua;models/?.lua;;' lua5.4 %s %s %s 2>&1",
        script, path, ck_in))
    local out = p:read("a")
    p:close()
    assert.are.equal(string.format("%016x %s %d", whorl.hash64(want:bytes()), m.name, m:count_params()), out)
    -- and in this process
    local back = whorl.load(path)
    assert.are.equal(0, max_diff(whorl.predict(back, x), want))
end

describe("autoencoder100", function()
    it("is the article's 100x100 model: 74,497 parameters, same-size sigmoid output", function()
        local m = autoencoder100{ seed = 1 }
        assert.are.equal(conv(1, 32, 3) + conv(32, 64, 3) + conv(64, 64, 3) + conv(64, 32, 3)
            + conv(32, 1, 3), m:count_params())
        assert.are.equal(74497, m:count_params())
        local text = m:summary{ print = false }
        assert.matches("Total params: 74,497", text, 1, true)
        local y = m(whorl.rand({ 2, 1, 100, 100 }))
        assert.are.same({ 2, 1, 100, 100 }, y:size())
        assert.is_true((-y):max():item() <= 0 and y:max():item() <= 1)
    end)

    it("takes depth, filters and kernel size; checks its options", function()
        local m = autoencoder100{ input_size = 16, filters = { 2, 4 }, kernel_size = 3, seed = 2 }
        assert.are.equal(conv(1, 2, 3) + conv(2, 4, 3) + conv(4, 4, 3) + conv(4, 2, 3) + conv(2, 1, 3),
            m:count_params())
        assert.are.equal(337, m:count_params())
        assert.are.same({ 3, 1, 16, 16 }, m(whorl.rand({ 3, 1, 16, 16 })):size())
        local deep = autoencoder100{ input_size = 32, filters = { 2, 3, 4 }, kernel_size = 5, seed = 2 }
        assert.are.equal(conv(1, 2, 5) + conv(2, 3, 5) + conv(3, 4, 5) + conv(4, 4, 5) + conv(4, 3, 5)
            + conv(3, 2, 5) + conv(2, 1, 5), deep:count_params())
        assert.are.same({ 1, 1, 32, 32 }, deep(whorl.rand({ 1, 1, 32, 32 })):size())
        raises(function() autoencoder100{ input_size = 30 } end, "divisible by 4")
        raises(function() autoencoder100{ depth = 3 } end, "unknown option 'depth'")
        -- bitwise reproducible from a seed
        local a = autoencoder100{ input_size = 16, filters = { 2, 4 }, seed = 5 }
        local b = autoencoder100{ input_size = 16, filters = { 2, 4 }, seed = 5 }
        local x = whorl.rand({ 1, 1, 16, 16 })
        assert.are.equal(0, max_diff(a(x), b(x)))
    end)

    it("survives config round trips and whorl.save/load", function()
        local m = autoencoder100{ input_size = 16, filters = { 2, 4 }, seed = 3 }
        local x = whorl.rand({ 2, 1, 16, 16 })
        round_trip(m, x)
        fresh_load(m, x, "ae100.safetensors")
    end)
end)

describe("unet", function()
    it("has the parameters counted by hand and keeps the input size", function()
        local m = unet{ depth = 1, filters = 2, seed = 1 }
        local want = conv(1, 2, 3) + conv(2, 2, 3)          -- encoder block
            + conv(2, 4, 3) + conv(4, 4, 3)                  -- bottleneck
            + conv(4 + 2, 2, 3) + conv(2, 2, 3)              -- decoder block after the concat
            + conv(2, 1, 1)                                  -- head
        assert.are.equal(433, want)
        assert.are.equal(want, m:count_params())
        local y = m(whorl.rand({ 2, 1, 16, 16 }))
        assert.are.same({ 2, 1, 16, 16 }, y:size())
        assert.is_true((-y):max():item() <= 0 and y:max():item() <= 1)

        local bn = unet{ depth = 1, filters = 2, batch_norm = true, seed = 1 }
        local bn_want = conv(1, 2, 3, false) + 4 + conv(2, 2, 3, false) + 4
            + conv(2, 4, 3, false) + 8 + conv(4, 4, 3, false) + 8
            + conv(6, 2, 3, false) + 4 + conv(2, 2, 3, false) + 4 + conv(2, 1, 1)
        assert.are.equal(bn_want, bn:count_params())       -- running stats are buffers

        local tr = unet{ depth = 1, filters = 2, up = "transpose", seed = 1 }
        assert.are.equal(conv(1, 2, 3) + conv(2, 2, 3) + conv(2, 4, 3) + conv(4, 4, 3)
            + conv(4, 2, 2) + conv(2 + 2, 2, 3) + conv(2, 2, 3) + conv(2, 1, 1), tr:count_params())
    end)

    it("works for any input divisible by 2^depth, with any options", function()
        local m = unet{ depth = 3, filters = 2, kernel_size = 5, batch_norm = true, channels = 2,
            out_channels = 3, up = "transpose", seed = 4 }
        assert.are.same({ 2, 3, 16, 24 }, m(whorl.rand({ 2, 2, 16, 24 })):size())
        assert.are.same({ 1, 3, 16, 8 }, m(whorl.rand({ 1, 2, 16, 8 })):size())
        raises(function() m(whorl.rand({ 1, 2, 12, 16 })) end, "divisible by 2^depth = 8")
        raises(function() m(whorl.rand({ 1, 1, 16, 16 })) end, "expected 2 input channels")
        raises(function() unet{ depth = 2, kernel = 3 } end, "unknown option 'kernel'")
        raises(function() unet{ up = "pixelshuffle" } end, "up must be")
        local plain = unet{ depth = 2, filters = 2, seed = 4 }
        assert.are.same({ 1, 1, 32, 32 }, plain(whorl.rand({ 1, 1, 32, 32 })):size())
    end)

    it("uses its skips: gradient reaches the first block with the bottleneck zeroed", function()
        local m = unet{ depth = 1, filters = 4, seed = 7 }
        whorl.no_grad(function()
            for _, p in ipairs(m.bottleneck:parameters()) do p:zero_() end
        end)
        whorl.manual_seed(1)
        local x = whorl.rand({ 2, 1, 16, 16 })
        m(x):sum():backward()
        -- the bottleneck's zero weights pass no gradient down: all of it came by the skip
        local g = m.encoders[1]:parameters()[1].grad
        assert.is_not_nil(g)
        assert.is_true(g:abs():sum():item() > 0, "no gradient through the skip")
        -- and the output still depends on the input
        local x2 = whorl.rand({ 2, 1, 16, 16 })
        assert.is_true(max_diff(m(x), m(x2)) > 0)
    end)

    it("survives config round trips (JSON) and whorl.save/load without its script", function()
        local x = whorl.rand({ 2, 1, 16, 16 })
        local m = unet{ depth = 2, filters = 2, batch_norm = true, up = "transpose", seed = 3 }
        m:train()
        m(x)   -- moves the running statistics away from their initial values
        round_trip(m, x)
        fresh_load(m, x, "unet.safetensors")
        round_trip(unet{ depth = 1, filters = 3, kernel_size = 5, seed = 2 }, x)
    end)
end)

describe("masked", function()
    -- the parameters of the trunk of masked{depth = 1, filters = 2} fed
    -- `channels` input channels: two blocks down, one up after the skip
    local function small_trunk(channels)
        return conv(channels, 2, 3) + conv(2, 2, 3) + conv(2, 4, 3) + conv(4, 4, 3)
            + conv(6, 2, 3) + conv(2, 2, 3)
    end

    it("has a shared trunk, two heads and the parameters counted by hand", function()
        local m = masked{ depth = 1, filters = 2, seed = 1 }
        assert.are.equal(small_trunk(1) + conv(2, 1, 1) + conv(2, 1, 1), m:count_params())
        local x = whorl.rand({ 2, 1, 16, 16 })
        local out, mask, content = m(x)
        assert.are.same({ 2, 1, 16, 16 }, out:size())
        assert.are.same({ 2, 1, 16, 16 }, mask:size())
        assert.are.same({ 2, 1, 16, 16 }, content:size())
        assert.are.equal(mask, m.last_mask)
        assert.are.equal(content, m.last_content)
        -- the composite, as documented
        assert.is_true(max_diff(out, mask * content + (1 - mask) * x) < 1e-6)
        raises(function() masked{ head = false } end, "unknown option 'head'")
    end)

    it("passes the input through where the predicted mask is 0", function()
        local m = masked{ depth = 2, filters = 2, seed = 2 }
        whorl.no_grad(function()
            m.mask_head.weight:zero_()
            m.mask_head.bias:fill_(-40)
        end)
        local x = whorl.rand({ 2, 1, 16, 16 })
        local out, mask, content = m(x)
        assert.is_true(mask:max():item() < 1e-12)
        assert.is_true(max_diff(content, x) > 0.01)
        assert.is_true(max_diff(out, x) < 1e-6)
        -- and the content where it is 1
        whorl.no_grad(function() m.mask_head.bias:fill_(40) end)
        out, mask, content = m(x)
        assert.is_true(max_diff(out, content) < 1e-6)
    end)

    it("masked.loss: reconstruction plus BCE of the mask when the trainer passes one", function()
        local m = masked{ depth = 1, filters = 2, seed = 3 }
        local x, y = whorl.rand({ 2, 1, 16, 16 }), whorl.rand({ 2, 1, 16, 16 })
        local _, true_mask = whorl.synth.damage(y, "random", { level = "medium", seed = 4 })
        local out, mask = m(x)
        local mse, bce = nn.losses.MSE()(out, y):item(), nn.losses.BCE()(mask, true_mask):item()
        local l1 = nn.losses.L1()(out, y):item()
        local near = function(a, b) return math.abs(a - b) < 1e-5 * (1 + math.abs(b)) end
        assert.is_true(near(masked.loss{ model = m }(out, y):item(), mse))
        assert.is_true(near(masked.loss{ model = m }(out, y, true_mask):item(), mse + bce))
        assert.is_true(near(masked.loss{ model = m, mask_weight = 0.5, reconstruction = "l1" }(out, y,
            true_mask):item(), l1 + 0.5 * bce))
        assert.is_true(near(masked.loss()(out, y, true_mask):item(), mse))
        raises(function() masked.loss{ reconstruction = "huber" } end, "reconstruction must be")
        -- the mask term trains the mask head
        masked.loss{ model = m }(out, y, true_mask):backward()
        assert.is_true(m.mask_head.weight.grad:abs():sum():item() > 0)
    end)

    it("survives config round trips and whorl.save/load without its script", function()
        local x = whorl.rand({ 2, 1, 16, 16 })
        local m = masked{ depth = 2, filters = 2, seed = 5 }
        round_trip(m, x)
        fresh_load(m, x, "masked.safetensors")
    end)

    it("standardize: the trunk also sees each image at zero mean and unit deviation", function()
        local m = masked{ depth = 1, filters = 2, seed = 7, standardize = true }
        assert.are.equal(small_trunk(2) + conv(2, 1, 1) + conv(2, 1, 1), m:count_params())
        -- without the raw channel the trunk cannot tell a print from a fainter,
        -- shifted copy of it: the content is the same for both
        local first = m.trunk:parameters()[1]
        whorl.no_grad(function() first:narrow(2, 1, 1):zero_() end)
        local x = whorl.rand({ 2, 1, 16, 16 })
        local _, _, c1 = m(x)
        local _, _, c2 = m(x * 0.3 + 0.5)
        -- (up to the 1e-3 that guards the deviation of a blank image)
        assert.is_true(max_diff(c1, c2) < 5e-3, "content moved by " .. max_diff(c1, c2))
        -- while the raw channel still tells them apart
        local m2 = masked{ depth = 1, filters = 2, seed = 7, standardize = true }
        local _, _, d1 = m2(x)
        local _, _, d2 = m2(x * 0.3 + 0.5)
        assert.is_true(max_diff(d1, d2) > 10 * max_diff(c1, c2), "raw channel moved it by " .. max_diff(d1, d2))
    end)

    it("input_skip: the heads see the trunk's input beside its features", function()
        local m = masked{ depth = 1, filters = 2, seed = 8, input_skip = true, standardize = true }
        assert.are.equal(small_trunk(2) + conv(4, 1, 1) + conv(4, 1, 1), m:count_params())
        local x = whorl.rand({ 2, 1, 16, 16 })
        local out, mask, content = m(x)
        assert.are.same({ 2, 1, 16, 16 }, out:size())
        assert.is_true(max_diff(out, mask * content + (1 - mask) * x) < 1e-6)
    end)

    it("affine: the content is a gain times the standardized input plus an offset, per image", function()
        local m = masked{ depth = 1, filters = 2, seed = 11, standardize = true, affine = true }
        -- heads: mask, per-pixel change, and a Linear from the 2 features' means and maxima to
        -- gain, offset and the share of the change
        assert.are.equal(small_trunk(2) + conv(2, 1, 1) + conv(2, 1, 1) + (4 * 3 + 3), m:count_params())
        -- at the start: gain 0.22 and offset 0.76 for every image (a clean print's contrast)
        local x = whorl.rand({ 2, 1, 16, 16 })
        local _, _, content = m(x)
        local mean = x:mean({ 3, 4 }, true)
        local centred = x - mean
        local s = centred / ((centred * centred):mean({ 3, 4 }, true):sqrt() + 1e-3)
        assert.is_true(max_diff(content, (s * 0.22 + 0.76):clamp(0, 1)) < 1e-5)
        -- so a faint copy of a print gets (nearly) the same content
        local _, _, faint = m(x * 0.5 + 0.25)
        assert.is_true(max_diff(content, faint) < 5e-3, "faint copy moved by " .. max_diff(content, faint))
        -- the per-pixel change counts at the print's share, sigmoid(0) = 0.5 at the start
        whorl.no_grad(function() m.content_head.bias:fill_(0.1) end)
        _, _, content = m(x)
        assert.is_true(max_diff(content, (s * 0.22 + 0.76 + 0.05):clamp(0, 1)) < 1e-5)
        -- all of it at a share of 1, none at 0
        local bias = m.print_head.bias
        whorl.no_grad(function() bias:narrow(1, 3, 1):fill_(40) end)
        _, _, content = m(x)
        assert.is_true(max_diff(content, (s * 0.22 + 0.76 + 0.1):clamp(0, 1)) < 1e-5)
        whorl.no_grad(function() bias:narrow(1, 3, 1):fill_(-40) end)
        _, _, content = m(x)
        assert.is_true(max_diff(content, (s * 0.22 + 0.76):clamp(0, 1)) < 1e-5)
        raises(function() masked{ residual = true } end, "unknown option 'residual'")
    end)

    it("keeps standardize, input_skip and affine through config and save/load", function()
        local x = whorl.rand({ 2, 1, 16, 16 })
        local m = masked{ depth = 2, filters = 2, seed = 10, standardize = true, input_skip = true }
        round_trip(m, x)
        fresh_load(m, x, "masked_options.safetensors")
        m = masked{ depth = 2, filters = 2, seed = 12, standardize = true, input_skip = true, affine = true }
        whorl.no_grad(function()
            m.content_head.weight:fill_(0.01)
            m.print_head.weight:fill_(0.02)
        end)
        round_trip(m, x)
        fresh_load(m, x, "masked_affine.safetensors")
    end)

    it("learns on synthetic damaged prints with their masks: the loss goes down", function()
        local clean = whorl.synth.batch({ count = 8, size = 32, dpi = 200, seed = 11, info = false })
        local m = masked{ depth = 2, filters = 4, seed = 6 }
        local loss = masked.loss{ model = m }
        -- a fixed damaged set to measure on
        local vx, vmask = whorl.synth.damage(clean, "random", { level = "medium", seed = 99 })
        local function measure()
            m:eval()
            local v = whorl.no_grad(function() return loss(m(vx), clean, vmask):item() end)
            m:train()
            return v
        end
        local before = measure()
        local history = whorl.fit{ model = m, loss = loss, optimizer = optim.Adam(m, { lr = 0.01 }),
            train = augment.damaged(clean, { with_mask = true, seed = 1 }), batch_size = 4,
            epochs = 30, seed = 2, verbose = 0 }
        local after = measure()
        assert.are.equal(30, #history.loss)
        assert.is_true(after < before, string.format("loss %.4f -> %.4f", before, after))
        assert.is_true(history.loss[30] < history.loss[1],
            string.format("epoch loss %.4f -> %.4f", history.loss[1], history.loss[30]))
    end)
end)
