func.func @f() {
  %0 = qlora.weight "" : tensor<2xf32>
  return
}
