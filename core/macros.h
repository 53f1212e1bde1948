#pragma once
/// MIXTAPE_HD marks functions usable on host and device (__host__ __device__ under nvcc, empty otherwise).
#if defined(__CUDACC__)
#define MIXTAPE_HD __host__ __device__
#define MIXTAPE_INLINE __forceinline__
#else
#define MIXTAPE_HD
#define MIXTAPE_INLINE inline
#endif
