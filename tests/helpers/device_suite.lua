-- The GPU comparison suite: every op, forward and backward, and a few
-- training steps of the seed model, run on the CPU and on a device, the
-- device's results compared with the CPU's to 1e-4.
--
--   local suite = require "helpers.device_suite"
--   for _, case in ipairs(suite.cases) do it(case.name, function() case.run("cuda") end) end
--
-- tests/cuda_spec.lua runs it on a real CUDA device (pending without one);
-- tests/device_dispatch_spec.lua runs it on a fake device whose memory is
-- host memory, which checks the ops' device paths on machines without a GPU.
-- Each case raises on a mismatch, naming the case, the tensor, the element
-- and both values.
local whorl = require "whorl"
local flat = require("helpers.gradcheck").flat

local M = { TOL = 1e-4 }

-- got (any device) against ref (CPU): |g - r| <= tol * (1 + |r|), NaNs agree.
local function close(what, got, ref, tol)
    tol = tol or M.TOL
    if type(ref) == "number" then
        if not (math.abs(got - ref) <= tol * (1 + math.abs(ref))) then
            error(string.format("%s: %.9g, CPU %.9g", what, got, ref), 0)
        end
        return
    end
    got = got:cpu()
    local gs, rs = got:size(), ref:size()
    if table.concat(gs, "x") ~= table.concat(rs, "x") then
        error(string.format("%s: shape %s, CPU %s", what, table.concat(gs, "x"),
            table.concat(rs, "x")), 0)
    end
    if got:dtype() ~= ref:dtype() then
        error(string.format("%s: dtype %s, CPU %s", what, got:dtype(), ref:dtype()), 0)
    end
    local g, r = flat(got), flat(ref)
    for i = 1, #r do
        local a, b = g[i], r[i]
        local same = (a ~= a and b ~= b) or math.abs(a - b) <= tol * (1 + math.abs(b))
        if not same then
            error(string.format("%s: element %d is %.9g, CPU %.9g (tolerance %g)", what, i, a,
                b, tol), 0)
        end
    end
end
M.close = close

-- x on the device as a leaf (requiring grad when x does).
local function on(dev, x)
    local d = x:detach():to(dev)
    if x.requires_grad then d.requires_grad = true end
    return d
end
M.on = on

local function leaf(t)
    t.requires_grad = true
    return t
end

-- f(inputs...) on the CPU and on the device: the outputs, then the
-- gradients of sum(y * W) for a fixed W with respect to every input that
-- requires grad.  f may return several tensors (each compared; gradients
-- from the first).
local function compare(name, dev, f, inputs, tol)
    local n = #inputs
    local dinputs = {}
    for i = 1, n do dinputs[i] = on(dev, inputs[i]) end
    local yc = { f(table.unpack(inputs, 1, n)) }
    local yd = { f(table.unpack(dinputs, 1, n)) }
    for k = 1, #yc do
        if not yd[k].device:match("^cuda") then
            error(string.format("%s: result %d is on %s", name, k, yd[k].device), 0)
        end
        close(name .. (#yc > 1 and " result " .. k or ""), yd[k], yc[k], tol)
    end
    local gc_in, gd_in = {}, {}
    for i = 1, n do
        if inputs[i].requires_grad then
            gc_in[#gc_in + 1], gd_in[#gd_in + 1] = inputs[i], dinputs[i]
        end
    end
    if #gc_in == 0 or not yc[1].requires_grad then return end
    local state = whorl.get_rng_state()
    whorl.manual_seed(99)
    local w = whorl.rand(yc[1]:size(), { dtype = yc[1]:dtype() }) - 0.5
    whorl.set_rng_state(state)
    local gc = whorl.grad({ yc[1] }, gc_in, { grad_outputs = { w } })
    local gd = whorl.grad({ yd[1] }, gd_in, { grad_outputs = { w:to(dev) } })
    for k = 1, #gc do
        if not gd[k].device:match("^cuda") then
            error(string.format("%s: gradient %d is on %s", name, k, gd[k].device), 0)
        end
        close(string.format("%s gradient %d", name, k), gd[k], gc[k], tol)
    end
end
M.compare = compare

local function rand(shape, dtype) return whorl.rand(shape, { dtype = dtype or "float32" }) end
local function randn(shape, dtype) return whorl.randn(shape, { dtype = dtype or "float32" }) end

local cases = {}
M.cases = cases
local function case(name, run) cases[#cases + 1] = { name = name, run = run } end

-- ---- memory and copies ---------------------------------------------------------------------

case("copies between the host and the device keep values, dtypes and layouts", function(dev)
    whorl.manual_seed(1)
    local x = randn({ 3, 4, 5 })
    local d = x:to(dev)
    assert(d.device:match("^cuda"), "to() moved the tensor to " .. d.device)
    close("round trip", d:cpu(), x, 0)
    close("strided upload", x:transpose(1, 3):to(dev), x:transpose(1, 3):contiguous(), 0)
    close("strided download", d:transpose(1, 3):cpu(), x:transpose(1, 3):contiguous(), 0)
    close("contiguous on the device", d:transpose(1, 2):contiguous(), x:transpose(1, 2):contiguous(), 0)
    close("float64 on the device", d:double(), x:double(), 0)
    local bytes = (x * 100 + 120):to(dev):byte()
    close("uint8 on the device", bytes, (x * 100 + 120):byte(), 0)
    close("uint8 back to float", bytes:float(), (x * 100 + 120):byte():float(), 0)
    close("zeros", whorl.zeros({ 2, 3 }, { device = dev }), whorl.zeros(2, 3), 0)
    close("ones", whorl.ones({ 2, 3 }, { device = dev }), whorl.ones(2, 3), 0)
    close("full", whorl.full({ 2, 3 }, 2.5, { device = dev }), whorl.full({ 2, 3 }, 2.5), 0)
    close("tensor from tables", whorl.tensor({ { 1, 2 }, { 3, 4 } }, { device = dev }),
        whorl.tensor({ { 1, 2 }, { 3, 4 } }), 0)
    local e = whorl.empty({ 2, 2 }, { device = dev })
    assert(e.device:match("^cuda"), "empty on " .. e.device)
    assert(d:get(2, 3, 4) == x:get(2, 3, 4), "get")
    d:set(1, 1, 1, 7.5)
    assert(d:get(1, 1, 1) == 7.5, "set")
    assert(d[2]:sum():item() == d:cpu()[2]:sum():item(), "a row and item()")
    assert(tostring(d):match("cuda:0"), "tostring names the device")
    local c = whorl.zeros({ 3, 4, 5 }, { device = dev })
    c:copy_(x)
    close("copy_ across devices", c, x, 0)
    c:copy_(x[1]:to(dev))
    close("copy_ with broadcasting", c, x[1]:expand(3, 4, 5), 0)
    c:fill_(3)
    close("fill_", c, whorl.full({ 3, 4, 5 }, 3), 0)
    c[2] = 5
    assert(c:cpu()[2]:sum():item() == 100, "row assignment")
end)

case("mixing devices in one op is an error naming both devices", function(dev)
    local a, b = whorl.ones(3), whorl.ones(3):to(dev)
    for _, f in ipairs({
        function() return a + b end,
        function() return whorl.matmul(b, a) end,
        function() return whorl.cat({ b, a }) end,
        function() return whorl.mse_loss(b, a) end,
    }) do
        local ok, err = pcall(f)
        assert(not ok, "mixing cpu and " .. dev .. " succeeded")
        assert(tostring(err):match("cuda:0") and tostring(err):match("cpu"),
            "the error should name both devices: " .. tostring(err))
    end
end)

-- ---- elementwise ----------------------------------------------------------------------------------

case("binary ops with broadcasting, strided operands, and their gradients", function(dev)
    whorl.manual_seed(2)
    for _, op in ipairs({ "add", "sub", "mul", "div", "maximum", "minimum", "pow" }) do
        local a = leaf(rand({ 2, 3, 4 }) + 0.5)
        local b = leaf(rand({ 3, 1 }) + 0.5)
        compare(op .. " broadcast", dev, function(x, y) return whorl[op](x, y) end, { a, b })
        local c = leaf(rand({ 4, 3 }) + 0.5)
        compare(op .. " strided", dev, function(x, y) return whorl[op](x, y:t()) end, { a, c })
    end
    local a64 = leaf(randn({ 5, 6 }, "float64"))
    compare("mul float64", dev, function(x) return x * x:t():t() end, { a64 })
end)

case("scalar forms, unary ops and their gradients", function(dev)
    whorl.manual_seed(3)
    local x = leaf(randn({ 4, 5 }))
    local pos = leaf(rand({ 4, 5 }) + 0.1)
    for _, f in ipairs({
        { "affine", function(t) return t * 2.5 + 1 end },
        { "pow_scalar", function(t) return t ^ 3 end },
        { "rsub", function(t) return 2 - t end },
        { "rdiv", function(t) return 2 / (t + 3) end },
        { "neg", function(t) return -t end },
        { "exp", whorl.exp }, { "abs", whorl.abs }, { "relu", whorl.relu },
        { "sigmoid", whorl.sigmoid }, { "tanh", whorl.tanh }, { "square", whorl.square },
        { "sin", whorl.sin }, { "cos", whorl.cos },
        { "leaky_relu", function(t) return whorl.leaky_relu(t, 0.2) end },
        { "clamp", function(t) return whorl.clamp(t, -0.5, 0.7) end },
    }) do
        compare(f[1], dev, f[2], { x })
    end
    compare("log", dev, whorl.log, { pos })
    compare("sqrt", dev, whorl.sqrt, { pos })
    compare("unary on a strided view", dev, function(t) return whorl.exp(t:t()) end, { x })
end)

case("in-place updates", function(dev)
    whorl.manual_seed(4)
    local x, a, b = randn({ 3, 4 }), randn({ 3, 4 }), rand({ 4 }) + 1
    local function both(f)
        local c, d = x:clone(), x:to(dev)
        f(c, a, b)
        f(d, a:to(dev), b:to(dev))
        return d, c
    end
    close("add_", both(function(t, p) t:add_(p, 0.5) end))
    close("mul_", both(function(t, p, q) t:mul_(q) end))
    close("addcmul_", both(function(t, p, q) t:addcmul_(p, q, 0.3) end))
    close("addcdiv_", both(function(t, p, q) t:addcdiv_(p, q, -0.3) end))
    close("add_ number", both(function(t) t:add_(2) end))
    close("div_", both(function(t) t:div_(4) end))
    close("exp_", both(function(t) t:exp_() end))
    close("clamp_", both(function(t) t:clamp_(-0.2, 0.3) end))
    close("add_ into a strided view", both(function(t, p) t:t():add_(p:t()) end))
end)

-- ---- reductions -----------------------------------------------------------------------------------

case("sum, mean, max, argmax over dims, and their gradients", function(dev)
    whorl.manual_seed(5)
    local x = leaf(randn({ 3, 4, 5 }))
    compare("sum all", dev, function(t) return t:sum() end, { x })
    compare("sum dims", dev, function(t) return t:sum({ 1, 3 }) end, { x })
    compare("sum keepdim", dev, function(t) return t:sum(2, true) end, { x })
    compare("mean", dev, function(t) return t:mean({ 2, 3 }) end, { x })
    compare("max all", dev, function(t) return t:max() end, { x })
    compare("max dim", dev, function(t) return t:max(2) end, { x })
    compare("max dims", dev, function(t) return t:max({ 1, 3 }, true) end, { x })
    local ties = leaf(whorl.tensor({ { 1, 3, 3 }, { 2, 2, 1 } }))
    compare("max with ties", dev, function(t) return t:max(2) end, { ties })
    compare("argmax dim", dev, function(t) return t:argmax(2) end, { x })
    compare("argmax flat", dev, function(t) return t:argmax() end, { x })
    compare("sum of a large tensor", dev, function(t) return t:sum(1) end,
        { leaf(rand({ 70000, 3 })) }, 1e-3)
    compare("sum over many cells", dev, function(t) return t:sum(2) end, { leaf(rand({ 3000, 700 })) })
    local big = rand({ 40000 })
    close("sum_squares", big:to(dev):sum_squares(), big:sum_squares())
end)

case("softmax and log_softmax along every dim", function(dev)
    whorl.manual_seed(6)
    local x = leaf(randn({ 2, 3, 4 }) * 3)
    for d = 1, 3 do
        compare("softmax " .. d, dev, function(t) return t:softmax(d) end, { x })
        compare("log_softmax " .. d, dev, function(t) return t:log_softmax(d) end, { x })
    end
end)

case("matmul: matrices, batches with broadcasting, vectors, transposed operands", function(dev)
    whorl.manual_seed(7)
    local a, b = leaf(randn({ 4, 5 })), leaf(randn({ 5, 3 }))
    compare("2-d", dev, whorl.matmul, { a, b })
    compare("transposed", dev, function(x, y) return whorl.matmul(y:t(), x:t()) end, { a, b })
    local ba, bb = leaf(randn({ 2, 3, 4, 5 })), leaf(randn({ 3, 5, 2 }))
    compare("batched", dev, whorl.matmul, { ba, bb })
    local v = leaf(randn({ 5 }))
    compare("matrix-vector", dev, whorl.matmul, { a, v })
    compare("vector-matrix", dev, function(x, y) return whorl.matmul(y, x) end, { b, v })
    compare("float64", dev, whorl.matmul, { leaf(randn({ 6, 7 }, "float64")), leaf(randn({ 7, 2 }, "float64")) })
end)

-- ---- shape ops ----------------------------------------------------------------------------------------

case("views, copies, cat and pad, and their gradients", function(dev)
    whorl.manual_seed(8)
    local x = leaf(randn({ 2, 3, 4 }))
    compare("view", dev, function(t) return t:view(6, 4) * 2 end, { x })
    compare("reshape of a transpose", dev, function(t) return t:transpose(1, 3):reshape(-1) end, { x })
    compare("permute + contiguous", dev, function(t) return t:permute(3, 1, 2):contiguous() end, { x })
    compare("narrow", dev, function(t) return t:narrow(3, 2, 2) * 1 end, { x })
    compare("select", dev, function(t) return t:select(2, 2) * 1 end, { x })
    compare("unsqueeze/squeeze", dev, function(t) return t:unsqueeze(2):squeeze() * 1 end, { x })
    compare("expand", dev, function(t) return t:narrow(1, 1, 1):expand(4, 3, 4) * 1 end, { x })
    compare("clone", dev, function(t) return t:clone() end, { x })
    compare("to float64", dev, function(t) return t:double() end, { x })
    local y = leaf(randn({ 2, 5, 4 }))
    compare("cat", dev, function(a, b) return whorl.cat({ a, b, a }, 2) end, { x, y })
    for _, mode in ipairs({ "constant", "reflect", "replicate" }) do
        compare("pad " .. mode, dev, function(t) return whorl.pad(t, { 1, 2, 2, 1 }, mode, 0.5) end, { x })
    end
end)

-- ---- convolution, pooling, resampling, normalisation --------------------------------------------------

case("conv2d and conv_transpose2d with bias, strides, dilation, fused activations", function(dev)
    whorl.manual_seed(9)
    local x = leaf(randn({ 2, 3, 9, 8 }))
    local w = leaf(randn({ 4, 3, 3, 3 }) * 0.3)
    local b = leaf(randn({ 4 }) * 0.1)
    for _, o in ipairs({
        { padding = "same" }, { padding = "same", activation = "relu" },
        { stride = 2, padding = 1, activation = "sigmoid" }, { dilation = 2, padding = { 2, 1 } },
    }) do
        compare("conv2d " .. (o.activation or "") .. " " .. tostring(o.stride or o.dilation or ""), dev,
            function(t, k, c) return whorl.conv2d(t, k, c, o) end, { x, w, b })
    end
    compare("conv2d without bias", dev, function(t, k) return whorl.conv2d(t, k, nil, { padding = 1 }) end,
        { x, w })
    local wt = leaf(randn({ 3, 5, 3, 3 }) * 0.3)
    local bt = leaf(randn({ 5 }) * 0.1)
    for _, o in ipairs({ { stride = 2, padding = 1, output_padding = 1 },
                         { stride = 1, padding = 1, activation = "relu" } }) do
        compare("conv_transpose2d", dev, function(t, k, c) return whorl.conv_transpose2d(t, k, c, o) end,
            { x, wt, bt })
    end
    compare("conv2d float64", dev, function(t, k) return whorl.conv2d(t, k, nil, { padding = 1 }) end,
        { leaf(randn({ 1, 2, 5, 5 }, "float64")), leaf(randn({ 3, 2, 3, 3 }, "float64")) })
end)

case("max and average pooling, ceil_mode, padding, and their gradients", function(dev)
    whorl.manual_seed(10)
    local x = leaf(randn({ 2, 3, 9, 10 }))
    local vals = {}
    for i = 1, 72 do vals[i] = (i * 7) % 3 end -- many ties
    local ints = leaf(whorl.tensor(vals):view(1, 2, 6, 6))
    compare("max_pool2d 2", dev, function(t) return whorl.max_pool2d(t, 2) end, { x })
    compare("max_pool2d ties", dev, function(t) return whorl.max_pool2d(t, 2) end, { ints })
    compare("max_pool2d overlapping", dev, function(t)
        return whorl.max_pool2d(t, { kernel = 3, stride = 2, padding = 1, ceil_mode = true }) end, { x })
    compare("avg_pool2d 2", dev, function(t) return whorl.avg_pool2d(t, 2) end, { x })
    compare("avg_pool2d padded", dev, function(t)
        return whorl.avg_pool2d(t, { kernel = 3, stride = 2, padding = 1, ceil_mode = true,
            count_include_pad = false }) end, { x })
end)

case("nearest and bilinear upsampling, and their gradients", function(dev)
    whorl.manual_seed(11)
    local x = leaf(randn({ 2, 2, 5, 4 }))
    compare("nearest x2", dev, function(t) return whorl.upsample(t, 2) end, { x })
    compare("nearest to 7x11", dev, function(t) return whorl.upsample(t, { size = { 7, 11 } }) end, { x })
    compare("bilinear x2", dev, function(t) return whorl.upsample(t, { scale = 2, mode = "bilinear" }) end, { x })
    compare("bilinear aligned", dev, function(t)
        return whorl.upsample(t, { size = { 9, 3 }, mode = "bilinear", align_corners = true }) end, { x })
end)

case("batch norm in training (running statistics) and evaluation, 2-d and 4-d", function(dev)
    whorl.manual_seed(12)
    for _, shape in ipairs({ { 4, 3, 5, 6 }, { 8, 3 } }) do
        local x = leaf(randn(shape) * 2 + 1)
        local w, b = leaf(rand({ 3 }) + 0.5), leaf(randn({ 3 }))
        local rm, rv = randn({ 3 }), rand({ 3 }) + 0.5
        local rmd, rvd = rm:to(dev), rv:to(dev)
        local function f(t, k, c)
            local on_dev = t.device ~= "cpu"
            return whorl.batch_norm(t, k, c, on_dev and rmd or rm, on_dev and rvd or rv,
                { training = true, momentum = 0.1, eps = 1e-5 })
        end
        compare("batch_norm training " .. #shape .. "-d", dev, f, { x, w, b })
        close("running mean", rmd, rm)
        close("running var", rvd, rv)
        compare("batch_norm without weight", dev, function(t)
            return whorl.batch_norm(t, nil, nil, nil, nil, { training = true }) end, { x })
        compare("batch_norm evaluation", dev, function(t, k, c)
            local on_dev = t.device ~= "cpu"
            return whorl.batch_norm(t, k, c, on_dev and rmd or rm, on_dev and rvd or rv,
                { training = false, eps = 1e-3 })
        end, { x, w, b })
    end
end)

case("dropout draws the same mask from the same seed on every device", function(dev)
    local x = leaf(randn({ 4, 50 }))
    compare("dropout", dev, function(t)
        whorl.manual_seed(13)
        return whorl.dropout(t, 0.3, true)
    end, { x })
end)

-- ---- losses and optimizers --------------------------------------------------------------------------

case("pixel losses with weights and every reduction, and their gradients", function(dev)
    whorl.manual_seed(14)
    local p = leaf(rand({ 2, 1, 6, 7 }) * 0.98 + 0.01)
    local t = leaf(rand({ 2, 1, 6, 7 }))
    local wgt = leaf(rand({ 1, 1, 6, 7 }) + 0.5)
    for _, loss in ipairs({ "mse_loss", "l1_loss", "bce_loss" }) do
        for _, red in ipairs({ "mean", "sum", "none" }) do
            compare(loss .. " " .. red, dev, function(a, b) return whorl[loss](a, b, { reduction = red }) end,
                { p, t })
            compare(loss .. " weighted " .. red, dev, function(a, b, c)
                return whorl[loss](a, b, { weight = c, reduction = red }) end, { p, t, wgt })
        end
    end
end)

case("cross-entropy with class weights, ignored elements and every reduction", function(dev)
    whorl.manual_seed(15)
    local z = leaf(randn({ 3, 4, 5, 2 }) * 2)
    local target = whorl.tensor({ { { 1, 2 }, { 4, 3 }, { 2, 2 }, { 1, 0 }, { 3, 4 } },
                                  { { 4, 4 }, { 1, 1 }, { 0, 2 }, { 3, 3 }, { 2, 1 } },
                                  { { 2, 3 }, { 3, 4 }, { 4, 1 }, { 1, 2 }, { 0, 0 } } })
    local cw = whorl.tensor({ 0.5, 1, 2, 1.5 })
    for _, red in ipairs({ "mean", "sum", "none" }) do
        compare("cross_entropy " .. red, dev, function(a)
            local on_dev = a.device ~= "cpu"
            return whorl.cross_entropy(a, on_dev and target:to(dev) or target,
                { weight = on_dev and cw:to(dev) or cw, ignore_index = 0, reduction = red })
        end, { z })
    end
    local z2 = leaf(randn({ 6, 5 }))
    local t2 = whorl.tensor({ 1, 5, 2, 2, 4, 3 })
    compare("cross_entropy (N,C)", dev, function(a)
        return whorl.cross_entropy(a, a.device ~= "cpu" and t2:to(dev) or t2) end, { z2 })
end)

case("fused optimizer updates: SGD (Nesterov), Adam (amsgrad), RMSprop (centered, momentum)", function(dev)
    whorl.manual_seed(16)
    local p, g = randn({ 5, 7 }), randn({ 5, 7 })
    local function run(device)
        local function z() return whorl.zeros({ 5, 7 }, { device = device }) end
        local ps = { p:clone():to(device), p:clone():to(device), p:clone():to(device) }
        local gd = g:to(device)
        local st = { z(), z(), z(), z(), z(), z(), z() }
        for step = 1, 3 do
            whorl.sgd_update_(ps[1], gd, st[1], { lr = 0.1, momentum = 0.9, nesterov = true,
                weight_decay = 0.01 })
            whorl.adam_update_(ps[2], gd, st[2], st[3], st[4], { lr = 0.01, step = step })
            whorl.rmsprop_update_(ps[3], gd, st[5], st[6], st[7], { lr = 0.01, momentum = 0.5 })
        end
        return ps
    end
    local c, d = run("cpu"), run(dev)
    for k = 1, 3 do close("optimizer " .. k, d[k], c[k]) end
end)

-- ---- autograd across the device, the seed model ---------------------------------------------------------

case("gradients accumulate in leaves on the device; implicit seeds; moves are differentiable", function(dev)
    whorl.manual_seed(17)
    local x = randn({ 3, 4 })
    local xd = x:to(dev)
    xd.requires_grad = true
    local y = (xd * xd):sum() + (xd * 3):sum()
    y:backward({ retain_graph = true })
    y:backward()
    local xc = x:clone()
    xc.requires_grad = true
    local yc = (xc * xc):sum() + (xc * 3):sum()
    yc:backward({ retain_graph = true })
    yc:backward()
    assert(xd.grad.device:match("^cuda"), "the gradient is on " .. xd.grad.device)
    close("accumulated gradient", xd.grad, xc.grad)
    local h = leaf(randn({ 2, 3 }))
    local moved = h:to(dev) * 2
    moved:cpu():sum():backward()
    assert(h.grad.device == "cpu", "the gradient went back to the CPU leaf")
    close("gradient through to()", h.grad, whorl.full({ 2, 3 }, 2))
end)

-- The seed autoencoder of tests/seed_model_spec.lua at 32x32.
local LAYERS = { { 1, 32 }, { 32, 64 }, { 64, 128 }, { 128, 128 }, { 128, 64 }, { 64, 1 } }

local function seed_params(seed)
    whorl.manual_seed(seed)
    local params = {}
    for i, l in ipairs(LAYERS) do
        local limit = math.sqrt(6 / (l[1] * 9 + l[2] * 9))
        params[2 * i - 1] = whorl.rand({ l[2], l[1], 3, 3 }) * (2 * limit) - limit
        params[2 * i] = whorl.zeros(l[2])
    end
    return params
end

local function seed_forward(p, x)
    local function conv(h, i, act)
        return whorl.conv2d(h, p[2 * i - 1], p[2 * i], { padding = "same", activation = act })
    end
    local h = whorl.max_pool2d(conv(x, 1, "relu"), 2)
    h = whorl.max_pool2d(conv(h, 2, "relu"), 2)
    h = conv(conv(h, 3, "relu"), 4, "relu")
    h = conv(whorl.upsample(h, 2), 5, "relu")
    return conv(whorl.upsample(h, 2), 6, "sigmoid")
end

-- Steps of gradient descent (plain, or the fused RMSprop) on one batch;
-- returns the losses and the final parameters.
local function train(device, steps, rmsprop)
    local p = seed_params(7)
    local state = {}
    for i, t in ipairs(p) do
        p[i] = t:to(device)
        p[i].requires_grad = true
        state[i] = whorl.zeros(t:size(), { device = device })
    end
    whorl.manual_seed(8)
    local xs = whorl.arange(32):view(1, 1, 1, 32):expand(2, 1, 32, 32)
    local target = (whorl.sin(xs * 0.7) * 0.3 + 0.65):to(device)
    local input = target * whorl.rand({ 2, 1, 32, 32 }):to(device)
    local losses = {}
    for step = 1, steps do
        local loss = whorl.mse_loss(seed_forward(p, input), target)
        losses[step] = loss:item()
        for _, t in ipairs(p) do t.grad = nil end
        loss:backward()
        whorl.no_grad(function()
            for i, t in ipairs(p) do
                if rmsprop then whorl.rmsprop_update_(t, t.grad, state[i], nil, nil, { lr = 1e-3 })
                else t:add_(t.grad, -0.5) end
            end
        end)
    end
    return losses, p
end

case("training steps of the seed model match the CPU (gradient descent and fused RMSprop)", function(dev)
    for _, rmsprop in ipairs({ false, true }) do
        local lc, pc = train("cpu", 4, rmsprop)
        local ld, pd = train(dev, 4, rmsprop)
        for s = 1, #lc do close(string.format("loss at step %d", s), ld[s], lc[s]) end
        for i = 1, #pc do close("parameter " .. i .. " after the steps", pd[i], pc[i]) end
    end
end)

return M
