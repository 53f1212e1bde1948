// Default (throwing) implementations of the optional families (conv / pool / norm, device-side AMP), for
// backends that lack them.
#include "core/backend.h"

#include "core/error.h"

namespace mixtape {

namespace {
[[noreturn]] void missing(const Backend& b, const char* op) {
  throw Error(detail::cat(op, ": not implemented on the ", b.name(), " backend"));
}
}  // namespace

void Backend::conv2d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  missing(*this, "conv2d");
}
void Backend::conv2d_backward_data(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  missing(*this, "conv2d backward (data)");
}
void Backend::conv2d_backward_filter(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  missing(*this, "conv2d backward (filter)");
}
void Backend::max_pool2d(const Tensor&, const Tensor&, const Tensor&, const Pool2dParams&) { missing(*this, "max_pool2d"); }
void Backend::max_pool2d_backward(const Tensor&, const Tensor&, const Tensor&) { missing(*this, "max_pool2d backward"); }
void Backend::avg_pool2d(const Tensor&, const Tensor&, const Pool2dParams&) { missing(*this, "avg_pool2d"); }
void Backend::avg_pool2d_backward(const Tensor&, const Tensor&, const Pool2dParams&) {
  missing(*this, "avg_pool2d backward");
}
void Backend::batch_norm(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&, const BatchNormParams&) {
  missing(*this, "batch_norm");
}
void Backend::batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const Tensor&, const Tensor&, const BatchNormParams&) {
  missing(*this, "batch_norm backward");
}

void Backend::unscale_and_check_into(const std::vector<Tensor>&, const Tensor&, const Tensor&) {
  missing(*this, "unscale_and_check_into");
}
void Backend::update_loss_scale(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const LossScaleUpdate&) {
  missing(*this, "update_loss_scale");
}

}  // namespace mixtape
