-- Depth and width of the seed autoencoder, and its kernel size: 6 runs of
-- a small synthetic set (64 px prints, 40 fingers), about a minute each on
-- two cores.
--   bin/whorl sweep experiments/sweeps/filters.lua --out out/sweep-filters --workers 2
return {
    base = { model = "autoencoder224", size = 64, fingers = 40, impressions = 4, test_fingers = 10,
        epochs = 6, batch_size = 16, loss = "mse", optimizer = "rmsprop", lr = 0.001, seed = 13 },
    grid = {
        filters = { { 16, 32 }, { 32, 64 }, { 16, 32, 64 } },   -- one entry per level: the depth
        kernel_size = { 3, 5 },
    },
}
