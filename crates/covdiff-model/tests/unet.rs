//! The UNet: shapes, diffusers-style module names, and the DDPM CIFAR-10 size.

#![cfg(feature = "ndarray")]

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Distribution, Int, Tensor};
use covdiff_model::backends::Cpu;
use covdiff_model::unet::UNetConfig;

/// Collects the dotted path of every float parameter.
#[derive(Default)]
struct Paths {
    stack: Vec<String>,
    found: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for Paths {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
        self.found.push(self.stack.join("."));
    }
}

#[test]
fn tiny_unet_maps_images_to_images_and_exposes_head_features() {
    let dev = Default::default();
    let model = UNetConfig::tiny(1).init::<Cpu>(&dev);
    let x = Tensor::<Cpu, 4>::random([2, 1, 28, 28], Distribution::Normal(0.0, 1.0), &dev);
    let t = Tensor::<Cpu, 1>::from_floats([10.0, 900.0], &dev);
    let out = model.forward_features(x, t, None);
    assert_eq!(out.eps.dims(), [2, 1, 28, 28]);
    assert_eq!(out.mid.dims(), [2, 64, 7, 7]);
    assert_eq!(out.last_up.dims(), [2, 32, 28, 28]);
    let eps = out.eps.into_data().to_vec::<f32>().unwrap();
    assert!(eps.iter().all(|v| v.is_finite()));

    let cond = UNetConfig::tiny(3).with_num_class_embeds(Some(10)).init::<Cpu>(&dev);
    let x = Tensor::<Cpu, 4>::zeros([2, 3, 16, 16], &dev);
    let y = Tensor::<Cpu, 1, Int>::from_ints([3, 7], &dev);
    let a = cond.forward(x.clone(), Tensor::from_floats([5.0, 5.0], &dev), Some(y));
    assert_eq!(a.dims(), [2, 3, 16, 16]);
    // The class changes the output.
    let d = (a.clone().narrow(0, 0, 1) - a.narrow(0, 1, 1)).abs().max().into_scalar();
    assert!(d > 0.0);
}

#[test]
fn module_names_follow_diffusers_unet2dmodel() {
    let model = UNetConfig::cifar(3).init::<Cpu>(&Default::default());
    let mut paths = Paths::default();
    model.visit(&mut paths);
    let names = paths.found;
    for want in [
        "conv_in.weight",
        "time_embedding.linear_1.weight",
        "time_embedding.linear_2.bias",
        "down_blocks.0.resnets.0.norm1.gamma",
        "down_blocks.0.resnets.0.conv1.weight",
        "down_blocks.0.resnets.0.time_emb_proj.weight",
        "down_blocks.0.resnets.1.conv2.bias",
        "down_blocks.0.downsamplers.0.conv.weight",
        "down_blocks.1.resnets.0.conv_shortcut.weight",
        "down_blocks.1.attentions.0.group_norm.beta",
        "down_blocks.1.attentions.1.to_q.weight",
        "down_blocks.1.attentions.0.to_out.0.weight",
        "mid_block.resnets.1.norm2.gamma",
        "mid_block.attentions.0.to_k.weight",
        "up_blocks.0.resnets.2.conv_shortcut.weight",
        "up_blocks.0.upsamplers.0.conv.weight",
        "up_blocks.2.attentions.2.to_v.bias",
        "up_blocks.3.resnets.0.conv1.weight",
        "conv_norm_out.gamma",
        "conv_out.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "missing {want}; have e.g. {:?}", &names[..names.len().min(12)]);
    }
    for absent in [
        "down_blocks.3.downsamplers.0.conv.weight",
        "up_blocks.3.upsamplers.0.conv.weight",
        "down_blocks.0.attentions.0.to_q.weight",
    ] {
        assert!(!names.iter().any(|n| n == absent), "unexpected {absent}");
    }
}

#[test]
fn cifar_config_has_the_size_of_ddpm_cifar10() {
    // Ho et al. report 35.7M parameters for their CIFAR-10 model; diffusers'
    // google/ddpm-cifar10-32, the same architecture, has exactly 35,746,307.
    let n = UNetConfig::cifar(3).init::<Cpu>(&Default::default()).num_params();
    assert_eq!(n, 35_746_307);
    assert!(UNetConfig::new(vec![32, 64], vec![false]).validate().is_err());
    assert!(UNetConfig::new(vec![30], vec![false]).validate().unwrap_err().contains("groups"));
}
