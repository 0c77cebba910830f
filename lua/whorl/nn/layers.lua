-- The layers without convolutions: pooling, resampling, activations,
-- Linear, Flatten, BatchNorm2d, Dropout, Concat, Identity and Input.  Each
-- is a thin wrapper of one whorl op; its defaults are Keras' where Keras has
-- the layer (the summary shows Keras' class names: MaxPooling2D, Dense...).
--
--   nn.MaxPool2d(kernel, {stride = kernel, padding = 0, ceil_mode = false})
--   nn.AvgPool2d(kernel, {stride = kernel, padding = 0, ceil_mode = false,
--                count_include_pad = true})
--   nn.GlobalAvgPool2d()  nn.GlobalMaxPool2d()
--                        (N, C, H, W) -> (N, C): the mean (maximum) of each
--                        channel over the image (Keras' GlobalAveragePooling2D)
--   nn.Upsample{scale = 2 | size = {h, w}, mode = "nearest" | "bilinear",
--               align_corners = false}             (also nn.Upsample(2, "bilinear"))
--   nn.ReLU()  nn.LeakyReLU{negative_slope = 0.3}  nn.Sigmoid()  nn.Tanh()
--   nn.Linear(in_features, out_features, {bias = true, kernel_initializer =
--             "glorot_uniform", bias_initializer = "zeros", dtype})
--   nn.Flatten()         (N, ...) -> (N, rest) in whorl's NCHW order
--   nn.BatchNorm2d(num_features, {eps = 1e-5, momentum = 0.1, affine = true})
--       PyTorch's conventions (Keras' momentum 0.99 is momentum = 0.01
--       here); running_mean and running_var are buffers in the state_dict.
--   nn.Dropout(p = 0.5)  inverted dropout, only in train()
--   nn.Concat{dim = 2}   forward(a, b, ...) or forward({a, b, ...}): joins
--                        tensors along dim (Keras' Concatenate; channels
--                        by default)
--   nn.Identity()
--   nn.Input{shape = {C, H, W}}  checks the input's shape (-1: any size) and
--                        lets summary() run without an input_shape
local whorl = require "whorl"
local base = require "whorl.nn.module"
local init = require "whorl.nn.initializers"

local Module, define = base.Module, base.define

local function check_tensor(x)
    if not whorl.is_tensor(x) then
        error(string.format("expected a tensor input, got %s", type(x)), 0)
    end
end

local function check_4d(x)
    check_tensor(x)
    if x:dim() ~= 4 then
        error(string.format("expected a 4-d input (N, C, H, W), got %s", base.shape_str(x)), 0)
    end
end

local function pair_copy(p) return { p[1], p[2] } end

local function check_bool(type_name, key, v, default)
    if v == nil then return default end
    if type(v) ~= "boolean" then
        error(string.format("%s: %s must be a boolean, got %s", type_name, key, type(v)), 0)
    end
    return v
end

-- ---- pooling ----------------------------------------------------------------------

local function pool_class(type_name, keras_type, op, avg)
    local cls = define(type_name, Module, { keras_type = keras_type, builtin = true })
    local allowed = { "kernel_size", "stride", "padding", "ceil_mode" }
    if avg then allowed[#allowed + 1] = "count_include_pad" end

    function cls:__init(...)
        local o = base.options(type_name, { "kernel_size", "stride", "padding" }, allowed, ...)
        if o.kernel_size == nil then error(type_name .. ": kernel_size is required", 0) end
        self.kernel_size = base.check_pair(type_name, "kernel_size", o.kernel_size, 1)
        self.stride = base.check_pair(type_name, "stride", o.stride or self.kernel_size, 1)
        self.padding = base.check_pair(type_name, "padding", o.padding or 0, 0)
        self.ceil_mode = check_bool(type_name, "ceil_mode", o.ceil_mode, false)
        if avg then
            self.count_include_pad = check_bool(type_name, "count_include_pad",
                o.count_include_pad, true)
        end
        rawset(self, "_pool_opts", {
            kernel = self.kernel_size, stride = self.stride, padding = self.padding,
            ceil_mode = self.ceil_mode, count_include_pad = avg and self.count_include_pad or nil,
        })
    end

    function cls:forward(x)
        check_4d(x)
        return op(x, self._pool_opts)
    end

    function cls:config_args()
        return { {
            kernel_size = pair_copy(self.kernel_size), stride = pair_copy(self.stride),
            padding = pair_copy(self.padding), ceil_mode = self.ceil_mode,
            count_include_pad = self.count_include_pad,
        }, n = 1 }
    end

    function cls:extra_repr()
        return string.format("%dx%d, stride %dx%d", self.kernel_size[1], self.kernel_size[2],
            self.stride[1], self.stride[2])
    end
    return cls
end

local MaxPool2d = pool_class("MaxPool2d", "MaxPooling2D", whorl.max_pool2d, false)
local AvgPool2d = pool_class("AvgPool2d", "AveragePooling2D", whorl.avg_pool2d, true)

-- ---- Upsample -------------------------------------------------------------------------

local Upsample = define("Upsample", Module, { keras_type = "UpSampling2D", builtin = true })

function Upsample:__init(...)
    local o = base.options("Upsample", { "scale", "mode" }, { "scale", "size", "mode",
        "align_corners" }, ...)
    if o.scale ~= nil and o.size ~= nil then
        error("Upsample: give scale or size, not both", 0)
    end
    if o.size ~= nil then
        self.size = base.check_pair("Upsample", "size", o.size, 1)
    else
        local s = o.scale or 2
        if type(s) == "number" then s = { s, s } end
        if type(s) ~= "table" or type(s[1]) ~= "number" or type(s[2]) ~= "number"
            or s[1] <= 0 or s[2] <= 0 then
            error("Upsample: scale must be a positive number or a pair {sh, sw}", 0)
        end
        self.scale = { s[1], s[2] }
    end
    self.mode = o.mode or "nearest"
    if self.mode ~= "nearest" and self.mode ~= "bilinear" then
        error(string.format("Upsample: mode must be 'nearest' or 'bilinear', got %s",
            tostring(self.mode)), 0)
    end
    self.align_corners = check_bool("Upsample", "align_corners", o.align_corners, false)
    rawset(self, "_opts", { scale = self.scale, size = self.size, mode = self.mode,
        align_corners = self.align_corners })
end

function Upsample:forward(x)
    check_4d(x)
    return whorl.upsample(x, self._opts)
end

function Upsample:config_args()
    return { { scale = self.scale and pair_copy(self.scale), size = self.size and pair_copy(self.size),
        mode = self.mode, align_corners = self.align_corners }, n = 1 }
end

function Upsample:extra_repr()
    local s = self.scale and string.format("x%gx%g", self.scale[1], self.scale[2])
        or string.format("to %dx%d", self.size[1], self.size[2])
    return s .. ", " .. self.mode
end

-- ---- activations ------------------------------------------------------------------------

local function activation_class(type_name, keras_type, fn)
    local cls = define(type_name, Module, { keras_type = keras_type, builtin = true })
    function cls:__init(...) base.options(type_name, {}, {}, ...) end
    function cls:forward(x)
        check_tensor(x)
        return fn(x)
    end
    function cls:config_args() return { {}, n = 1 } end
    return cls
end

local ReLU = activation_class("ReLU", "ReLU", whorl.relu)
local Sigmoid = activation_class("Sigmoid", "Sigmoid", whorl.sigmoid)
local Tanh = activation_class("Tanh", "Tanh", whorl.tanh)
local Identity = activation_class("Identity", "Identity", function(x) return x end)

-- Global pooling: one number per channel, whatever the image size, so a
-- classifier's head does not depend on the input size.  Option-free
-- wrappers of one op, as the activations.
local GlobalAvgPool2d = activation_class("GlobalAvgPool2d", "GlobalAveragePooling2D", function(x)
    check_4d(x)
    return x:mean({ 3, 4 })
end)
local GlobalMaxPool2d = activation_class("GlobalMaxPool2d", "GlobalMaxPooling2D", function(x)
    check_4d(x)
    return x:max({ 3, 4 })
end)

local LeakyReLU = define("LeakyReLU", Module, { keras_type = "LeakyReLU", builtin = true })

function LeakyReLU:__init(...)
    local o = base.options("LeakyReLU", { "negative_slope" }, { "negative_slope" }, ...)
    local s = o.negative_slope or 0.3 -- Keras' layer default (PyTorch's is 0.01)
    if type(s) ~= "number" then error("LeakyReLU: negative_slope must be a number", 0) end
    self.negative_slope = s
end

function LeakyReLU:forward(x)
    check_tensor(x)
    return whorl.leaky_relu(x, self.negative_slope)
end

function LeakyReLU:config_args() return { { negative_slope = self.negative_slope }, n = 1 } end
function LeakyReLU:extra_repr() return "slope " .. self.negative_slope end

-- ---- Linear ---------------------------------------------------------------------------

local Linear = define("Linear", Module, { keras_type = "Dense", builtin = true })

function Linear:__init(...)
    local o = base.options("Linear", { "in_features", "out_features" }, { "in_features",
        "out_features", "bias", "kernel_initializer", "bias_initializer", "dtype" }, ...)
    self.in_features = base.check_int("Linear", "in_features", o.in_features)
    self.out_features = base.check_int("Linear", "out_features", o.out_features)
    self.use_bias = check_bool("Linear", "bias", o.bias, true)
    self.kernel_initializer = o.kernel_initializer or "glorot_uniform"
    self.bias_initializer = o.bias_initializer or "zeros"
    self.dtype = o.dtype or "float32"
    local fi, fo = self.in_features, self.out_features
    self:register_parameter("weight", init.make(self.kernel_initializer, { fo, fi }, fi, fo,
        self.dtype, "Linear kernel_initializer"))
    if self.use_bias then
        self:register_parameter("bias", init.make(self.bias_initializer, { fo }, fi, fo,
            self.dtype, "Linear bias_initializer"))
    end
end

function Linear:forward(x)
    check_tensor(x)
    if x:dim() < 1 or x:size(-1) ~= self.in_features then
        error(string.format("expected input of shape (..., %d), got %s", self.in_features,
            base.shape_str(x)), 0)
    end
    local y = x:matmul(self.weight:t())
    if self.bias then y = y + self.bias end
    return y
end

function Linear:config_args()
    return { {
        in_features = self.in_features, out_features = self.out_features, bias = self.use_bias,
        kernel_initializer = base.plain_copy(self.kernel_initializer, "kernel_initializer"),
        bias_initializer = base.plain_copy(self.bias_initializer, "bias_initializer"),
        dtype = self.dtype,
    }, n = 1 }
end

function Linear:extra_repr() return self.in_features .. " -> " .. self.out_features end

-- ---- Flatten ------------------------------------------------------------------------------

local Flatten = define("Flatten", Module, { keras_type = "Flatten", builtin = true })

function Flatten:__init(...) base.options("Flatten", {}, {}, ...) end

function Flatten:forward(x)
    check_tensor(x)
    if x:dim() < 2 then
        error(string.format("expected a batch (N, ...) of at least 2 dims, got %s",
            base.shape_str(x)), 0)
    end
    return x:flatten(2)
end

function Flatten:config_args() return { {}, n = 1 } end

-- ---- BatchNorm2d ----------------------------------------------------------------------------

local BatchNorm2d = define("BatchNorm2d", Module,
    { keras_type = "BatchNormalization", builtin = true })

function BatchNorm2d:__init(...)
    local o = base.options("BatchNorm2d", { "num_features" }, { "num_features", "eps", "momentum",
        "affine", "dtype" }, ...)
    self.num_features = base.check_int("BatchNorm2d", "num_features", o.num_features)
    self.eps = o.eps or 1e-5
    self.momentum = o.momentum or 0.1
    if type(self.eps) ~= "number" or self.eps <= 0 then
        error("BatchNorm2d: eps must be a positive number", 0)
    end
    if type(self.momentum) ~= "number" or self.momentum < 0 or self.momentum > 1 then
        error("BatchNorm2d: momentum must be a number in [0, 1] (PyTorch's convention)", 0)
    end
    self.affine = check_bool("BatchNorm2d", "affine", o.affine, true)
    self.dtype = o.dtype or "float32"
    local c = self.num_features
    if self.affine then
        self:register_parameter("weight", whorl.ones(c, self.dtype))
        self:register_parameter("bias", whorl.zeros(c, self.dtype))
    end
    self:register_buffer("running_mean", whorl.zeros(c, self.dtype))
    self:register_buffer("running_var", whorl.ones(c, self.dtype))
    rawset(self, "_train_opts", { training = true, momentum = self.momentum, eps = self.eps })
    rawset(self, "_eval_opts", { training = false, momentum = self.momentum, eps = self.eps })
end

function BatchNorm2d:forward(x)
    check_tensor(x)
    if (x:dim() ~= 4 and x:dim() ~= 2) or x:size(2) ~= self.num_features then
        error(string.format("expected input of shape (N, %d, H, W) or (N, %d), got %s",
            self.num_features, self.num_features, base.shape_str(x)), 0)
    end
    return whorl.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
        self.training and self._train_opts or self._eval_opts)
end

function BatchNorm2d:config_args()
    return { { num_features = self.num_features, eps = self.eps, momentum = self.momentum,
        affine = self.affine, dtype = self.dtype }, n = 1 }
end

function BatchNorm2d:extra_repr() return tostring(self.num_features) end

-- ---- Dropout ---------------------------------------------------------------------------------

local Dropout = define("Dropout", Module, { keras_type = "Dropout", builtin = true })

function Dropout:__init(...)
    local o = base.options("Dropout", { "p" }, { "p" }, ...)
    local p = o.p or 0.5
    if type(p) ~= "number" or p < 0 or p >= 1 then
        error("Dropout: p must be a number in [0, 1), got " .. tostring(p), 0)
    end
    self.p = p
end

function Dropout:forward(x)
    check_tensor(x)
    return whorl.dropout(x, self.p, self.training)
end

function Dropout:config_args() return { { p = self.p }, n = 1 } end
function Dropout:extra_repr() return "p " .. self.p end

-- ---- Concat ------------------------------------------------------------------------------------

local Concat = define("Concat", Module, { keras_type = "Concatenate", builtin = true })

function Concat:__init(...)
    local o = base.options("Concat", { "dim" }, { "dim" }, ...)
    local d = math.tointeger(o.dim or 2)
    if not d or d == 0 then
        error("Concat: dim must be a non-zero integer (1-based, negative from the end)", 0)
    end
    self.dim = d
end

function Concat:forward(first, ...)
    local list = first
    if whorl.is_tensor(first) then list = { first, ... } end
    if type(list) ~= "table" or #list == 0 then
        error("expected tensors, as forward(a, b, ...) or forward({a, b, ...})", 0)
    end
    for i, t in ipairs(list) do
        if not whorl.is_tensor(t) then
            error(string.format("input %d is a %s, not a tensor", i, type(t)), 0)
        end
    end
    return whorl.cat(list, self.dim)
end

function Concat:config_args() return { { dim = self.dim }, n = 1 } end
function Concat:extra_repr() return "dim " .. self.dim end

-- ---- Input ---------------------------------------------------------------------------------------

local Input = define("Input", Module, { keras_type = "InputLayer", builtin = true })

function Input:__init(...)
    local o = base.options("Input", { "shape" }, { "shape" }, ...)
    local s = o.shape
    if type(s) ~= "table" or #s == 0 then
        error("Input: shape must be a table of sizes without the batch, e.g. {1, 224, 224}", 0)
    end
    local shape = {}
    for i, v in ipairs(s) do
        if v ~= -1 then base.check_int("Input", "shape[" .. i .. "]", v, 1) end
        shape[i] = math.tointeger(v)
    end
    self.shape = shape
end

function Input:forward(x)
    check_tensor(x)
    local ok = x:dim() == #self.shape + 1
    for i = 1, #self.shape do
        ok = ok and (self.shape[i] == -1 or x:size(i + 1) == self.shape[i])
    end
    if not ok then
        local want = {}
        for i, v in ipairs(self.shape) do want[i] = v == -1 and "*" or tostring(v) end
        error(string.format("expected input of shape (N, %s), got %s", table.concat(want, ", "),
            base.shape_str(x)), 0)
    end
    return x
end

function Input:config_args() return { { shape = { table.unpack(self.shape) } }, n = 1 } end
function Input:extra_repr() return "(N, " .. table.concat(self.shape, ", ") .. ")" end

return {
    MaxPool2d = MaxPool2d, AvgPool2d = AvgPool2d, GlobalAvgPool2d = GlobalAvgPool2d,
    GlobalMaxPool2d = GlobalMaxPool2d, Upsample = Upsample, ReLU = ReLU,
    LeakyReLU = LeakyReLU, Sigmoid = Sigmoid, Tanh = Tanh, Identity = Identity, Linear = Linear,
    Flatten = Flatten, BatchNorm2d = BatchNorm2d, Dropout = Dropout, Concat = Concat, Input = Input,
}
