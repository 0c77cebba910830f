/* Matrix products on cuBLAS.  The core hands over row-major GEMMs (as it
 * would to cblas with CblasRowMajor); cuBLAS is column-major, and a
 * row-major matrix is the transpose of the column-major one with the same
 * memory, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T with the
 * operands swapped and no data moved. */
#include <limits.h>

#include "cuda_internal.h"

wh_status whc_gemm(int device, wh_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n,
                   int64_t k, const void *a, int64_t lda, const void *b, int64_t ldb,
                   double beta, void *c, int64_t ldc) {
    int64_t dims[6] = {m, n, k, lda, ldb, ldc};
    for (int i = 0; i < 6; i++)
        if (dims[i] > INT_MAX)
            return whc_fail(WH_ERR_SHAPE, "matmul: a matrix dimension of %lld exceeds what cuBLAS "
                            "indexes", (long long)dims[i]);
    if (m == 0 || n == 0) return WH_OK;
    whc_device *d;
    WH_TRY(whc_device_get(device, &d));
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (dt == WH_FLOAT32) {
        float one = 1.0f, bf = (float)beta;
        WHC_CUBLAS(cublasSgemm(d->blas, op_b, op_a, (int)n, (int)m, (int)k, &one, b, (int)ldb, a,
                               (int)lda, &bf, c, (int)ldc));
    } else {
        double one = 1.0;
        WHC_CUBLAS(cublasDgemm(d->blas, op_b, op_a, (int)n, (int)m, (int)k, &one, b, (int)ldb, a,
                               (int)lda, &beta, c, (int)ldc));
    }
    return WH_OK;
}
