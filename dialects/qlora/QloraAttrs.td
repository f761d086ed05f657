//===- QloraAttrs.td - qlora attributes and enums ----------*- tablegen -*-===//
#ifndef QLORA_ATTRS_TD
#define QLORA_ATTRS_TD

include "dialects/qlora/QloraDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

/// A double-precision value printed and parsed as a bare float literal.
class Qlora_F64Parameter<string desc> : APFloatParameter<desc> {
  let parser = [{ [&]() -> ::mlir::FailureOr<::llvm::APFloat> {
      double value;
      if (::mlir::failed($_parser.parseFloat(value)))
        return ::mlir::failure();
      return ::llvm::APFloat(value);
    }() }];
  let printer = [{ $_printer << $_self.convertToDouble() }];
}

class Qlora_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Qlora_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Qlora_LoraInit : I32EnumAttr<"LoraInit", "initialisation of a LoRA matrix", [
    I32EnumAttrCase<"kaiming_uniform", 0>,
    I32EnumAttrCase<"zeros", 1>
  ]> {
  let cppNamespace = "::mlir::qlora";
  let genSpecializedAttr = 0;
}

def Qlora_LoraInitAttr : EnumAttr<Qlora_Dialect, Qlora_LoraInit, "init"> {
  let assemblyFormat = "`<` $value `>`";
}

def Qlora_SourceAttr : Qlora_Attr<"Source", "source"> {
  let summary = "Where a frozen tensor's bytes live: a safetensors file and key";
  let description = [{
    `#qlora.source<"/models/llama/model-00001-of-00002.safetensors",
    "model.embed_tokens.weight">` names the file and the tensor key. The
    compiler maps the file when it needs the bytes; the graph never copies
    them.
  }];
  let parameters = (ins StringRefParameter<"safetensors file path">:$file,
                        StringRefParameter<"tensor key in the file">:$key);
  let assemblyFormat = "`<` $file `,` $key `>`";
}

def Qlora_RopeScalingAttr : Qlora_Attr<"RopeScaling", "llama3_rope_scaling"> {
  let summary = "LLaMA-3 RoPE frequency adjustment (rope_type \"llama3\")";
  let description = [{
    The `rope_scaling` block of a LLaMA-3 config: wavelengths longer than
    `original_max_position_embeddings / low_freq_factor` are divided by
    `factor`, shorter than `.../high_freq_factor` are kept, and the band in
    between is interpolated smoothly, as transformers'
    `_compute_llama3_parameters` does.
  }];
  let parameters = (ins
    Qlora_F64Parameter<"frequency division factor">:$factor,
    Qlora_F64Parameter<"low-frequency factor">:$low_freq_factor,
    Qlora_F64Parameter<"high-frequency factor">:$high_freq_factor,
    "int64_t":$original_max_position_embeddings);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Qlora_ModelConfigAttr : Qlora_Attr<"ModelConfig", "model_config"> {
  let summary = "Architecture and shapes of the imported model";
  let description = [{
    What adapter export and the memory report need to know about the base
    model, as its `config.json` says (or a built-in preset).
    `name_or_path` becomes PEFT's `base_model_name_or_path`.
  }];
  let parameters = (ins
    StringRefParameter<"architecture, e.g. LlamaForCausalLM">:$architecture,
    StringRefParameter<"HF model id or directory">:$name_or_path,
    "int64_t":$vocab_size,
    "int64_t":$hidden_size,
    "int64_t":$intermediate_size,
    "int64_t":$num_hidden_layers,
    "int64_t":$num_attention_heads,
    "int64_t":$num_key_value_heads,
    "int64_t":$head_dim,
    Qlora_F64Parameter<"RMSNorm epsilon">:$rms_norm_eps,
    Qlora_F64Parameter<"RoPE base">:$rope_theta,
    "bool":$tie_word_embeddings);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Qlora_LoraConfigAttr : Qlora_Attr<"LoraConfig", "lora_config"> {
  let summary = "The LoRA configuration, as PEFT's LoraConfig holds it";
  let parameters = (ins
    "int64_t":$r,
    Qlora_F64Parameter<"lora_alpha">:$alpha,
    Qlora_F64Parameter<"lora_dropout">:$dropout,
    "bool":$use_rslora,
    "::mlir::ArrayAttr":$targets,
    "int64_t":$seed);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    double getScaling() const;
  }];
}

#endif // QLORA_ATTRS_TD
