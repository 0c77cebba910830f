-- The seed autoencoder of the reference project (../shared/reference/
-- seed-repo-keras-224px.txt), built from core ops only: 3x3 'same'
-- convolutions 1->32, pool, 32->64, pool, 64->128, 128->128, up, 128->64,
-- up, 64->1 with ReLU everywhere but a sigmoid at the end.
local whorl = require "whorl"

local LAYERS = { {1, 32}, {32, 64}, {64, 128}, {128, 128}, {128, 64}, {64, 1} }

-- Keras' default initialisation: Glorot-uniform kernels, zero biases.
local function make_params(seed)
  whorl.manual_seed(seed)
  local params = {}
  for i, l in ipairs(LAYERS) do
    local cin, cout = l[1], l[2]
    local limit = math.sqrt(6 / (cin * 9 + cout * 9))
    local w = whorl.rand({cout, cin, 3, 3}) * (2 * limit) - limit
    w.requires_grad = true
    local b = whorl.zeros(cout)
    b.requires_grad = true
    params[2 * i - 1], params[2 * i] = w, b
  end
  return params
end

local function forward(p, x)
  local function conv(h, i, act)
    return whorl.conv2d(h, p[2 * i - 1], p[2 * i], {padding = "same", activation = act})
  end
  local h = conv(x, 1, "relu")
  h = whorl.max_pool2d(h, 2)
  h = conv(h, 2, "relu")
  h = whorl.max_pool2d(h, 2)
  h = conv(h, 3, "relu")
  h = conv(h, 4, "relu")
  h = whorl.upsample(h, {scale = 2})
  h = conv(h, 5, "relu")
  h = whorl.upsample(h, {scale = 2})
  return conv(h, 6, "sigmoid")
end

describe("the seed 224x224 autoencoder built from core ops", function()
  it("has 314,625 parameters and maps 1x1x224x224 to 1x1x224x224", function()
    local p = make_params(13)
    local total = 0
    for _, t in ipairs(p) do total = total + t:numel() end
    assert.are.equal(314625, total)
    local y = whorl.no_grad(forward, p, whorl.rand({1, 1, 224, 224}))
    assert.are.same({1, 1, 224, 224}, y:size())
    -- a sigmoid output lies strictly inside (0, 1)
    local lowest = -(-y):max():item()
    assert.is_true(lowest > 0 and y:max():item() < 1)
  end)

  it("lowers its loss over 20 steps of plain gradient descent on a fixed batch", function()
    local p = make_params(7)
    -- A print-like target (dark stripes on bright paper) and a damaged copy
    -- as input: the network starts at a uniform 0.5 and must move towards it.
    local xs = whorl.arange(224):view(1, 1, 1, 224):expand(2, 1, 224, 224)
    local target = whorl.sin(xs * 0.7) * 0.3 + 0.65
    local input = target * whorl.rand({2, 1, 224, 224})
    local lr = 0.5
    local first, last
    for step = 1, 20 do
      local loss = whorl.mse_loss(forward(p, input), target)
      if step == 1 then first = loss:item() end
      last = loss:item()
      for _, t in ipairs(p) do t.grad = nil end
      loss:backward()
      whorl.no_grad(function()
        for _, t in ipairs(p) do t:add_(t.grad, -lr) end
      end)
    end
    assert.is_true(last < 0.7 * first,
      string.format("loss went from %.6f to %.6f", first, last))
  end)
end)
