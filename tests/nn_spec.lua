-- whorl.nn: layers against the functional ops they wrap, parameters and
-- names, modes, lookup, hooks, state_dict and configs, initialisers, a
-- U-Net written as a plain Lua forward, and the losses.
local whorl = require "whorl"
local nn = require "whorl.nn"
local cjson = require "cjson"
local autoencoder = require "autoencoder224"
local check = require "helpers.check"
local raises, max_diff = check.raises, check.max_diff

local function same_bits(a, b)
    return a:contiguous():bytes() == b:contiguous():bytes()
end

-- A U-Net in miniature: two levels, a skip connection by concatenation.
local TinyUNet = nn.Module:extend("TinyUNet")

function TinyUNet:__init(opts)
    local c, f = opts.channels or 1, opts.filters or 4
    self.enc1 = nn.Conv2d(c, f, 3, { padding = "same", activation = "relu" })
    self.pool = nn.MaxPool2d(2)
    self.enc2 = nn.Conv2d(f, 2 * f, 3, { padding = "same", activation = "relu" })
    self.up = nn.Upsample{ scale = 2 }
    self.dec1 = nn.Conv2d(3 * f, f, 3, { padding = "same", activation = "relu" })
    self.head = nn.Conv2d(f, c, 1, { activation = "sigmoid" })
end

function TinyUNet:forward(x)
    local e1 = self.enc1(x)
    local e2 = self.enc2(self.pool(e1))
    local d1 = self.dec1(whorl.cat({ self.up(e2), e1 }, 2))
    return self.head(d1)
end

describe("layers match the ops they wrap", function()
    before_each(function() whorl.manual_seed(3) end)

    it("Conv2d: weights (out, in, kh, kw), padding, stride, fused activations", function()
        local x = whorl.randn({ 2, 3, 9, 8 })
        for _, opts in ipairs({
            { padding = "same", activation = "relu" }, { padding = "valid" },
            { padding = 1, stride = 2, activation = "sigmoid" }, { padding = { 2, 1 }, dilation = 2 },
        }) do
            local conv = nn.Conv2d(3, 5, 3, opts)
            assert.are.same({ 5, 3, 3, 3 }, conv.weight:size())
            assert.are.same({ 5 }, conv.bias:size())
            local want = whorl.conv2d(x, conv.weight, conv.bias, opts)
            assert.are.equal(0, max_diff(conv(x), want))
        end
        local t = nn.Conv2d(3, 2, 3, { padding = "same", activation = "tanh", bias = false })
        assert.is_nil(t.bias)
        assert.are.equal(0, max_diff(t(x), whorl.conv2d(x, t.weight, nil, { padding = "same" }):tanh()))
        local k = nn.Conv2d{ in_channels = 3, out_channels = 4, kernel_size = { 3, 1 } }
        assert.are.same({ 4, 3, 3, 1 }, k.weight:size())
    end)

    it("ConvTranspose2d: weights (in, out, kh, kw) and 'same' doubling with stride 2", function()
        local x = whorl.randn({ 2, 4, 5, 6 })
        local up = nn.ConvTranspose2d(4, 3, 3, { stride = 2, padding = "same" })
        assert.are.same({ 4, 3, 3, 3 }, up.weight:size())
        local y = up(x)
        assert.are.same({ 2, 3, 10, 12 }, y:size())
        local want = whorl.conv_transpose2d(x, up.weight, up.bias,
            { stride = 2, padding = 1, output_padding = 1 })
        assert.are.equal(0, max_diff(y, want))
        local plain = nn.ConvTranspose2d(4, 2, 2, { stride = 2, activation = "relu" })
        assert.are.equal(0, max_diff(plain(x), whorl.conv_transpose2d(x, plain.weight, plain.bias,
            { stride = 2, activation = "relu" })))
        assert.are.same({ 2, 2, 10, 12 }, plain(x):size())
    end)

    it("pooling, upsampling and activations", function()
        local x = whorl.randn({ 2, 3, 8, 6 })
        assert.are.equal(0, max_diff(nn.MaxPool2d(2)(x), whorl.max_pool2d(x, 2)))
        assert.are.equal(0, max_diff(nn.MaxPool2d(3, 2, 1)(x), whorl.max_pool2d(x, 3, 2, 1)))
        assert.are.equal(0, max_diff(nn.AvgPool2d(2, { ceil_mode = true })(x),
            whorl.avg_pool2d(x, { kernel = 2, ceil_mode = true })))
        assert.are.equal(0, max_diff(nn.Upsample(2)(x), whorl.upsample(x, { scale = 2 })))
        assert.are.equal(0, max_diff(nn.Upsample{ size = { 5, 7 }, mode = "bilinear" }(x),
            whorl.upsample(x, { size = { 5, 7 }, mode = "bilinear" })))
        assert.are.equal(0, max_diff(nn.ReLU()(x), whorl.relu(x)))
        assert.are.equal(0, max_diff(nn.Sigmoid()(x), whorl.sigmoid(x)))
        assert.are.equal(0, max_diff(nn.Tanh()(x), whorl.tanh(x)))
        -- Keras' LeakyReLU layer default slope is 0.3
        assert.are.equal(0, max_diff(nn.LeakyReLU()(x), whorl.leaky_relu(x, 0.3)))
        assert.are.equal(0, max_diff(nn.LeakyReLU(0.1)(x), whorl.leaky_relu(x, 0.1)))
        assert.are.equal(x, nn.Identity()(x))
    end)

    it("Linear, Flatten and Concat", function()
        local x = whorl.randn({ 4, 6 })
        local lin = nn.Linear(6, 3)
        assert.are.same({ 3, 6 }, lin.weight:size())
        assert.is_true(max_diff(lin(x), x:matmul(lin.weight:t()) + lin.bias) < 1e-6)
        local img = whorl.randn({ 2, 3, 4, 5 })
        assert.are.same({ 2, 60 }, nn.Flatten()(img):size())
        local a, b = whorl.randn({ 2, 1, 4, 5 }), whorl.randn({ 2, 2, 4, 5 })
        local cat = nn.Concat()
        assert.are.equal(0, max_diff(cat(a, b), whorl.cat({ a, b }, 2)))
        assert.are.equal(0, max_diff(cat({ a, b }), whorl.cat({ a, b }, 2)))
        assert.are.same({ 4, 1, 4, 5 }, nn.Concat{ dim = 1 }(a, a):size())
    end)

    it("BatchNorm2d uses batch statistics in train() and running ones in eval()", function()
        local bn = nn.BatchNorm2d(3, { momentum = 0.2 })
        local x = whorl.randn({ 4, 3, 5, 5 }) * 2 + 1
        local rm, rv = whorl.zeros(3), whorl.ones(3)
        local want = whorl.batch_norm(x, whorl.ones(3), whorl.zeros(3), rm, rv,
            { training = true, momentum = 0.2, eps = 1e-5 })
        assert.is_true(max_diff(bn(x), want) < 1e-6)
        assert.is_true(max_diff(bn.running_mean, rm) < 1e-7)
        assert.is_true(max_diff(bn.running_var, rv) < 1e-6)
        bn:eval()
        local before = bn.running_mean:clone()
        local want_eval = whorl.batch_norm(x, bn.weight, bn.bias, rm, rv, { training = false })
        assert.is_true(max_diff(bn(x), want_eval) < 1e-6)
        assert.are.equal(0, max_diff(before, bn.running_mean))
        local names = {}
        for n in bn:named_buffers() do names[#names + 1] = n end
        assert.are.same({ "running_mean", "running_var" }, names)
    end)

    it("Dropout drops in train() only", function()
        local drop = nn.Dropout(0.5)
        local x = whorl.ones({ 1000 })
        whorl.manual_seed(11)
        local y = drop(x)
        whorl.manual_seed(11)
        assert.are.equal(0, max_diff(y, whorl.dropout(x, 0.5, true)))
        local zeros = 1000 - (y:sum():item() / 2)
        assert.is_true(zeros > 400 and zeros < 600, "about half dropped, got " .. zeros)
        drop:eval()
        assert.are.equal(0, max_diff(drop(x), x))
    end)

    it("Input checks shapes and lets -1 stand for any size", function()
        local inp = nn.Input{ shape = { 1, -1, 8 } }
        local x = whorl.zeros({ 2, 1, 5, 8 })
        assert.are.equal(x, inp(x))
        raises(function() inp(whorl.zeros({ 2, 2, 5, 8 })) end,
            "expected input of shape (N, 1, *, 8), got [2, 2, 5, 8]")
    end)
end)

describe("names, parameters and lookup", function()
    it("names layers like Keras, per prefix, until clear_session", function()
        nn.clear_session()
        local a, b, c = nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.MaxPool2d(2)
        assert.are.same({ "conv2d", "conv2d_1", "max_pooling2d" }, { a.name, b.name, c.name })
        assert.are.equal("re_lu", nn.ReLU().name)
        assert.are.equal("batch_normalization", nn.BatchNorm2d(2).name)
        assert.are.equal("dense", nn.Linear(2, 2).name)
        assert.are.equal("tiny_u_net", TinyUNet{}.name)
        assert.are.equal("mine", nn.Conv2d(1, 1, 3, { name = "mine" }).name)
        nn.clear_session()
        assert.are.equal("conv2d", nn.Conv2d(1, 1, 3).name)
        raises(function() nn.Conv2d(1, 1, 3, { name = "a.b" }) end, "without dots")
    end)

    it("lists parameters in a stable order with dotted names", function()
        local model = autoencoder{ input_size = 32 }
        local names = model:parameter_names()
        assert.are.same({ "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias",
            "7.weight", "7.bias", "9.weight", "9.bias", "11.weight", "11.bias" }, names)
        local i = 0
        for name, p in model:named_parameters() do
            i = i + 1
            assert.are.equal(names[i], name)
            assert.are.equal(model:parameters()[i], p)
            assert.is_true(p.requires_grad)
        end
        assert.are.equal(314625, model:count_params())
        local unet = TinyUNet{}
        assert.are.same({ "enc1.weight", "enc1.bias", "enc2.weight", "enc2.bias", "dec1.weight",
            "dec1.bias", "head.weight", "head.bias" }, unet:parameter_names())
        local seq = nn.Sequential{ nn.Conv2d(1, 2, 3), nn.Sequential{ nn.BatchNorm2d(2) } }
        local _, keys = seq:state_dict()
        assert.are.same({ "1.weight", "1.bias", "2.1.weight", "2.1.bias", "2.1.running_mean",
            "2.1.running_var" }, keys)
    end)

    it("finds layers by name or position and says what exists otherwise", function()
        nn.clear_session()
        local model = autoencoder{ input_size = 32 }
        local c3 = model:get("conv2d_3")
        assert.are.equal(model.modules_list[7], c3)
        assert.are.equal(model.modules_list[2], model:get(2))
        raises(function() model:get("conv2d_99") end, "no layer named 'conv2d_99'", "conv2d_5")
        local dup = nn.Sequential{ nn.ReLU{ name = "x" }, nn.ReLU{ name = "x" } }
        raises(function() dup:get("x") end, "two layers")
        local unet = TinyUNet{}
        assert.are.equal(unet.dec1, unet:get(unet.dec1.name))
    end)

    it("switches train/eval recursively and zeroes gradients", function()
        local model = nn.Sequential{ nn.Conv2d(1, 2, 3), nn.Sequential{ nn.Dropout(0.5) } }
        assert.is_true(model.modules_list[2].modules_list[1].training)
        model:eval()
        for _, m in ipairs(model:modules()) do assert.is_false(m.training) end
        model:train()
        for _, m in ipairs(model:modules()) do assert.is_true(m.training) end
        model(whorl.rand({ 1, 1, 5, 5 })):sum():backward()
        assert.is_not_nil(model:parameters()[1].grad)
        model:zero_grad()
        assert.is_nil(model:parameters()[1].grad)
    end)

    it("freezes parameters (Keras' trainable = False)", function()
        local conv = nn.Conv2d(1, 2, 3)
        conv:freeze()
        assert.is_false(conv.weight.requires_grad)
        conv:unfreeze()
        assert.is_true(conv.weight.requires_grad)
    end)

    it("converts dtypes and refuses devices it does not have", function()
        local model = nn.Sequential{ nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2) }
        model:to("float64")
        for _, e in ipairs(model:named_state()) do assert.are.equal("float64", e[2]:dtype()) end
        assert.is_true(model:parameters()[1].requires_grad)
        assert.are.equal("float64", model:config().layers[1].args[1].dtype)
        assert.are.equal(model, model:to("cpu"))
        raises(function() model:to("cuda") end, "cannot move", "to 'cuda'", "GPU backend")
    end)
end)

describe("errors name the layer", function()
    it("for a wrong input, with the path of containers", function()
        nn.clear_session()
        -- the inner Sequential is made first, so it is 'sequential' (as in Keras)
        local model = nn.Sequential{ nn.Conv2d(3, 4, 3), nn.Sequential{ nn.Conv2d(5, 2, 3) } }
        raises(function() model(whorl.zeros({ 1, 2, 8, 8 })) end,
            "in layer 'sequential_1' (Sequential) > 'conv2d' (Conv2d): expected input of shape " ..
            "(N, 3, H, W), got [1, 2, 8, 8]")
        raises(function() model(whorl.zeros({ 1, 3, 8, 8 })) end,
            "in layer 'sequential_1' (Sequential) > 'sequential' (Sequential) > 'conv2d_1' " ..
            "(Conv2d): expected input of shape (N, 5, H, W), got [1, 4, 6, 6]")
        raises(function() nn.Linear(4, 2)(whorl.zeros({ 3, 5 })) end,
            "expected input of shape (..., 4), got [3, 5]")
        raises(function() nn.MaxPool2d(2)(whorl.zeros({ 3, 5 })) end, "expected a 4-d input")
        raises(function() nn.Conv2d(3, 4, 3)(7) end, "expected a tensor input, got number")
    end)

    it("for bad constructor arguments", function()
        raises(function() nn.Conv2d(1, 2, 3, { pading = 1 }) end, "Conv2d: unknown option 'pading'")
        raises(function() nn.Conv2d(1, 2) end, "Conv2d: kernel_size is required")
        raises(function() nn.Conv2d(0, 2, 3) end, "in_channels must be an integer >= 1")
        raises(function() nn.Conv2d(1, 2, 2, { padding = "same" }) end, "padding 'same' needs")
        raises(function() nn.Conv2d(1, 2, 3, { activation = "swish" }) end, "unknown activation")
        raises(function() nn.Conv2d(1, 2, 3, { kernel_initializer = "nope" }) end,
            "unknown initializer 'nope'")
        raises(function() nn.Dropout(1) end, "p must be a number in [0, 1)")
        raises(function() nn.Sequential{ nn.ReLU(), 3 } end, "entry 2 is a number, not a layer")
        local Holder = nn.Module:extend("Holder")
        function Holder:__init() self.blocks = { nn.ReLU() } end
        raises(function() Holder() end, "plain table holding modules", "nn.ModuleList")
        raises(function() nn.Module:extend("Conv2d") end, "built-in layer type")
        local NoForward = nn.Module:extend("NoForward")
        raises(function() NoForward()(whorl.zeros(1)) end, "NoForward has no forward method")
    end)
end)

describe("state_dict", function()
    it("round-trips weights and batch-norm buffers", function()
        local function make()
            return nn.Sequential{ nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU() }
        end
        local a = make()
        a(whorl.randn({ 4, 1, 6, 6 }) + 2) -- moves the running statistics
        local b = make()
        local res = b:load_state_dict(a:state_dict())
        assert.are.same({}, res.missing)
        a:eval(); b:eval()
        local x = whorl.randn({ 2, 1, 6, 6 })
        assert.are.equal(0, max_diff(a(x), b(x)))
        assert.are.equal(0, max_diff(a.modules_list[2].running_mean, b.modules_list[2].running_mean))
        -- copies, not shared tensors
        whorl.no_grad(function() a:parameters()[1]:fill_(0) end)
        assert.is_true(b:parameters()[1]:abs():sum():item() > 0)
    end)

    it("reports missing, unexpected, mismatched and non-tensor entries before copying", function()
        local model = nn.Sequential{ nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2) }
        local sd = model:state_dict()
        local before = model:parameters()[1]:clone()
        local bad = {}
        for k, v in pairs(sd) do bad[k] = v end
        bad["2.running_var"] = nil
        bad["3.weight"] = whorl.zeros(2)
        bad["1.bias"] = whorl.zeros(5)
        bad["1.weight"] = whorl.ones({ 2, 1, 3, 3 })
        raises(function() model:load_state_dict(bad) end, "missing: 2.running_var",
            "unexpected: 3.weight", "shape mismatch: 1.bias: model has [2], given [5]")
        assert.are.equal(0, max_diff(before, model:parameters()[1]))
        raises(function() model:load_state_dict({ ["1.weight"] = 3 }, { strict = false }) end,
            "1.weight is a number, not a tensor")
        local partial = { ["1.weight"] = whorl.ones({ 2, 1, 3, 3 }, "float64") }
        local res = model:load_state_dict(partial, { strict = false })
        assert.are.equal(5, #res.missing)
        assert.are.equal(9, model:parameters()[1]:sum():item() / 2)
        assert.are.equal("float32", model:parameters()[1]:dtype())
    end)
end)

describe("configs", function()
    it("rebuild a Sequential from plain data, names included", function()
        nn.clear_session()
        local model = autoencoder{ input_size = 32, filters = { 4, 8 } }
        local cfg = model:config()
        local text = cjson.encode(cfg) -- plain data: JSON-encodable
        local copy = nn.from_config(cjson.decode(text))
        assert.are.equal(model.name, copy.name)
        assert.are.same(model:parameter_names(), copy:parameter_names())
        for i, m in ipairs(model.modules_list) do
            assert.are.equal(m.name, copy.modules_list[i].name)
            assert.are.equal(m._type, copy.modules_list[i]._type)
        end
        copy:load_state_dict(model:state_dict())
        local x = whorl.rand({ 1, 1, 32, 32 })
        assert.are.equal(0, max_diff(model(x), copy(x)))
        -- restored names do not come back as automatic names
        assert.are.equal("conv2d_4", nn.Conv2d(1, 1, 1).name)
    end)

    it("rebuild user classes from their constructor arguments", function()
        local unet = TinyUNet{ filters = 3 }
        local cfg = cjson.decode(cjson.encode(unet:config()))
        assert.are.equal("TinyUNet", cfg.type)
        local copy = nn.from_config(cfg)
        assert.are.equal(unet.dec1.name, copy.dec1.name)
        copy:load_state_dict(unet:state_dict())
        local x = whorl.rand({ 2, 1, 8, 8 })
        assert.are.equal(0, max_diff(unet(x), copy(x)))
    end)

    it("let a class that takes modules describe itself (config/from_config)", function()
        local Residual = nn.Module:extend("Residual")
        function Residual:__init(block) self.block = block end
        function Residual:forward(x) return self.block(x) + x end
        function Residual:config()
            return { type = "Residual", name = self.name, block = self.block:config() }
        end
        function Residual.from_config(cfg, build) return Residual(build(cfg.block, "block")) end
        local r = Residual(nn.Conv2d(2, 2, 3, { padding = "same" }))
        local copy = nn.from_config(cjson.decode(cjson.encode(r:config())))
        assert.are.equal(r.name, copy.name)
        assert.are.equal(r.block.name, copy.block.name)
        copy:load_state_dict(r:state_dict())
        local x = whorl.rand({ 1, 2, 5, 5 })
        assert.are.equal(0, max_diff(r(x), copy(x)))
    end)

    it("leave the global generator alone and explain unknown types", function()
        local cfg = nn.Sequential{ nn.Conv2d(1, 4, 3) }:config()
        local state = whorl.get_rng_state()
        nn.from_config(cfg)
        assert.are.equal(state, whorl.get_rng_state())
        raises(function() nn.from_config({ type = "Nope" }) end, "unknown layer type 'Nope'",
            "Conv2d")
        raises(function() nn.from_config({ type = "Nope", module = "no.such.module" }) end,
            "defined by Lua module 'no.such.module'")
        local Closure = nn.Module:extend("Closure")
        function Closure:__init(f) self.f = f end
        raises(function() Closure(print):config() end, "argument 1 of Closure is a function")
    end)
end)

describe("initialisers", function()
    it("default to Keras' Glorot-uniform kernels and zero biases", function()
        local conv = nn.Conv2d(64, 128, 3)
        local limit = math.sqrt(6 / (64 * 9 + 128 * 9))
        local w = conv.weight
        local m = w:abs():max():item()
        assert.is_true(m <= limit and m > 0.99 * limit, string.format("max %g, limit %g", m, limit))
        assert.is_true(math.abs(w:mean():item()) < 0.01 * limit)
        local var = (w * w):mean():item()
        assert.is_true(math.abs(var / (limit * limit / 3) - 1) < 0.02, "variance " .. var)
        assert.are.equal(0, conv.bias:abs():max():item())
        local lin = nn.Linear(30, 10)
        assert.is_true(lin.weight:abs():max():item() <= math.sqrt(6 / 40))
    end)

    it("offer He (Kaiming) uniform and truncated normal, and PyTorch's normal", function()
        local conv = nn.Conv2d(32, 64, 3, { kernel_initializer = "he_uniform" })
        local limit = math.sqrt(6 / (32 * 9))
        assert.is_true(conv.weight:abs():max():item() <= limit)
        assert.is_true(conv.weight:abs():max():item() > 0.99 * limit)
        local he = nn.Conv2d(32, 64, 3, { kernel_initializer = "he_normal" }).weight
        local std = math.sqrt(2 / (32 * 9)) / 0.87962566103423978
        assert.is_true(he:abs():max():item() <= 2 * std + 1e-7) -- truncated at two stddevs
        local sd = math.sqrt((he * he):mean():item())
        assert.is_true(math.abs(sd / math.sqrt(2 / (32 * 9)) - 1) < 0.03, "stddev " .. sd)
        local kn = nn.Conv2d(32, 64, 3, { kernel_initializer = "kaiming_normal" }).weight
        assert.is_true(kn:abs():max():item() > 2.5 * math.sqrt(2 / (32 * 9))) -- not truncated
        local c = nn.Linear(3, 2, { bias_initializer = { type = "constant", value = 0.5 } })
        assert.are.same({ 0.5, 0.5 }, c.bias:totable())
    end)

    it("are bitwise reproducible from a seed without moving the global generator", function()
        local state = whorl.get_rng_state()
        local a = autoencoder{ input_size = 32, seed = 42 }
        local b = autoencoder{ input_size = 32, seed = 42 }
        local c = autoencoder{ input_size = 32, seed = 43 }
        assert.are.equal(state, whorl.get_rng_state())
        for i, p in ipairs(a:parameters()) do
            assert.is_true(same_bits(p, b:parameters()[i]), "parameter " .. i .. " differs")
        end
        assert.is_false(same_bits(a:parameters()[1], c:parameters()[1]))
        local gen = nn.init.generator(7)
        local x1 = gen:run(nn.Linear, 4, 4)
        local x2 = gen:run(nn.Linear, 4, 4) -- the stream goes on
        assert.is_false(same_bits(x1.weight, x2.weight))
        local again = nn.init.generator(7)
        assert.is_true(same_bits(x1.weight, again:run(nn.Linear, 4, 4).weight))
    end)
end)

describe("a U-Net written as a Lua forward", function()
    it("runs, trains every parameter and shows up in summary()", function()
        local unet = TinyUNet{ filters = 4 }
        local x = whorl.rand({ 2, 1, 16, 16 })
        local y = unet(x)
        assert.are.same({ 2, 1, 16, 16 }, y:size())
        nn.losses.MSE()(y, x):backward()
        for name, p in unet:named_parameters() do
            assert.is_not_nil(p.grad, name .. " got no gradient")
        end
        local text = unet:summary{ input_shape = { 1, 16, 16 }, print = false }
        assert.truthy(text:find("(None, 8, 8, 8)", 1, true)) -- enc2's output
        local order = {}
        for name in text:gmatch("│ (%S+) %(") do order[#order + 1] = name end
        assert.are.same({ unet.enc1.name, unet.pool.name, unet.enc2.name, unet.up.name,
            unet.dec1.name, unet.head.name }, order)
    end)
end)

describe("hooks and retained outputs (Grad-CAM)", function()
    it("give a layer's activation and d(score)/d(activation)", function()
        nn.clear_session()
        local model = autoencoder{ input_size = 32, filters = { 4, 8 } }
        local layer = model:get("conv2d_2")
        local seen
        local h = layer:register_forward_hook(function(m, out) seen = out:size() end)
        layer.retain_output = true
        local y = model(whorl.rand({ 1, 1, 32, 32 }))
        assert.are.same({ 1, 8, 16, 16 }, seen)
        local act = layer.output
        assert.are.same({ 1, 8, 16, 16 }, act:size())
        local g = whorl.grad(y:sum(), { act })[1]
        assert.are.same(act:size(), g:size())
        assert.is_true(g:abs():sum():item() > 0)
        h.remove()
        seen = nil
        model(whorl.rand({ 1, 1, 32, 32 }))
        assert.is_nil(seen)
        -- a hook may replace the output
        local r = nn.ReLU()
        r:register_forward_hook(function(_, out) return out * 0 end)
        assert.are.equal(0, r(whorl.ones(3)):sum():item())
    end)
end)

describe("losses", function()
    local L = nn.losses
    local p, t, w

    before_each(function()
        whorl.manual_seed(5)
        p = whorl.rand({ 2, 1, 12, 12 })
        t = whorl.rand({ 2, 1, 12, 12 })
        w = whorl.rand({ 2, 1, 12, 12 })
    end)

    it("wrap the pixel losses with optional weight maps", function()
        assert.are.equal(whorl.mse_loss(p, t):item(), L.MSE()(p, t):item())
        assert.are.equal(whorl.l1_loss(p, t, { weight = w }):item(), L.L1()(p, t, w):item())
        assert.are.equal(whorl.bce_loss(p, t, { weight = w }):item(), L.get("binary_crossentropy")(p, t, w):item())
        assert.are.same({ 2, 1, 12, 12 }, L.MSE{ reduction = "none" }(p, t):size())
        raises(function() L.MSE{ reduction = "avg" } end, "reduction must be mean, sum or none")
        raises(function() L.MSE()(p, 3) end, "pred and target must be tensors")
        raises(function() L.get("hinge") end, "unknown loss hinge")
    end)

    it("combine linearly and keep an all-ones map neutral", function()
        local combo = 0.84 * L.L1() + 0.16 * L.SSIM()
        local want = 0.84 * (p - t):abs():mean():item() + 0.16 * (1 - L.ssim(p, t):item())
        assert.is_true(math.abs(combo(p, t):item() - want) < 1e-6)
        local ones = whorl.ones({ 2, 1, 12, 12 })
        assert.is_true(math.abs(combo(p, t, ones):item() - combo(p, t):item()) < 1e-6)
        local copy = L.from_config(cjson.decode(cjson.encode(combo:config())))
        assert.is_true(math.abs(copy(p, t):item() - combo(p, t):item()) < 1e-7)
        local doubled = L.MSE() * 2 + L.MSE()
        assert.is_true(math.abs(doubled(p, t):item() - 3 * L.MSE()(p, t):item()) < 1e-6)
    end)

    it("SSIM: 0 loss for identical images, only masked pixels count, sizes checked", function()
        assert.is_true(math.abs(L.SSIM()(p, p):item()) < 1e-6)
        local mask = whorl.zeros({ 2, 1, 12, 12 })
        assert.is_true(math.abs(L.SSIM()(p, t, mask):item()) < 1e-7)
        assert.is_true(L.SSIM()(p, t):item() > 0.5)
        raises(function() L.SSIM()(whorl.rand({ 1, 1, 8, 8 }), whorl.rand({ 1, 1, 8, 8 })) end,
            "at least 11x11")
        raises(function() L.SSIM{ window = 4 } end, "window must be an odd positive integer")
        raises(function() L.ssim(p, whorl.rand({ 2, 1, 12, 11 })) end, "of one shape")
    end)
end)
