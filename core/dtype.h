#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/half.h"

namespace mixtape {

/// Element types. f16/bf16 are the subject; f64 is CPU-only (gradcheck); i64 holds labels, u8 raw bytes/masks.
enum class DType : uint8_t { f32, f16, bf16, f64, i64, u8 };

/// Bytes per element.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::f64: return 8;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

/// Short name: "f32", "f16", "bf16", "f64", "i64", "u8".
constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f64: return "f64";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

/// True for f32, f16, bf16, f64.
constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64; }

/// Parses a dtype name ("f32"/"float32", "f16"/"float16"/"half", "bf16"/"bfloat16", "f64", "i64", "u8").
DType parse_dtype(const std::string& name);

/// The C++ storage type of a dtype.
template <DType D> struct dtype_traits;
template <> struct dtype_traits<DType::f32> { using type = float; };
template <> struct dtype_traits<DType::f16> { using type = Half; };
template <> struct dtype_traits<DType::bf16> { using type = BFloat16; };
template <> struct dtype_traits<DType::f64> { using type = double; };
template <> struct dtype_traits<DType::i64> { using type = int64_t; };
template <> struct dtype_traits<DType::u8> { using type = uint8_t; };

/// The dtype of a C++ storage type.
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<Half>() { return DType::f16; }
template <> constexpr DType dtype_of<BFloat16>() { return DType::bf16; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

/// The type arithmetic runs in for a storage type: float for f16/bf16/f32, double for f64.
template <class T> struct acc_type { using type = float; };
template <> struct acc_type<double> { using type = double; };
template <> struct acc_type<int64_t> { using type = double; };
template <class T> using acc_t = typename acc_type<T>::type;

/// A tag carrying a type, for generic lambdas in dispatch.
template <class T> struct type_tag { using type = T; };

/// Calls f(type_tag<T>{}) with T the storage type of a floating dtype; throws for others, naming `what`.
template <class F>
decltype(auto) dispatch_floating(DType t, const char* what, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f16: return f(type_tag<Half>{});
    case DType::bf16: return f(type_tag<BFloat16>{});
    case DType::f64: return f(type_tag<double>{});
    default: break;
  }
  throw Error(detail::cat(what, ": expected a floating-point tensor (f32, f16, bf16 or f64), got ", dtype_name(t)));
}

/// Calls f(type_tag<T>{}) with T the storage type of any dtype.
template <class F>
decltype(auto) dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f16: return f(type_tag<Half>{});
    case DType::bf16: return f(type_tag<BFloat16>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::i64: return f(type_tag<int64_t>{});
    case DType::u8: return f(type_tag<uint8_t>{});
  }
  throw Error("invalid dtype");
}

/// Calls f(type_tag<U>{}) with U the unsigned integer of `bytes` bytes (1, 2, 4 or 8): for kernels that move elements
/// as bits, whatever their dtype; throws naming `what` for another size.
template <class F>
decltype(auto) dispatch_bits(size_t bytes, const char* what, F&& f) {
  switch (bytes) {
    case 1: return f(type_tag<uint8_t>{});
    case 2: return f(type_tag<uint16_t>{});
    case 4: return f(type_tag<uint32_t>{});
    case 8: return f(type_tag<uint64_t>{});
    default: break;
  }
  throw Error(detail::cat(what, ": unexpected element size ", bytes));
}

}  // namespace mixtape
