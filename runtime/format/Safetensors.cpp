#include "runtime/format/Safetensors.h" // placeholder: helper-1 is writing this file
