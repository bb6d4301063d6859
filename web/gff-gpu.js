// Runs shaders/gff.wgsl with the WebGPU API: one device, one bind-group layout, a pass per entry
// point, ping-pong storage buffers, and a mapped read-back of the field.

export class GffShader {
  static async create(adapter, code) {
    const device = await adapter.requestDevice();
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length) throw new Error(`shaders/gff.wgsl: ${errors.map((m) => m.message).join("; ")}`);
    const storage = (type) => ({ visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    const layout = device.createBindGroupLayout({
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
        { binding: 1, ...storage("read-only-storage") },
        { binding: 2, ...storage("storage") },
        { binding: 3, ...storage("storage") },
      ],
    });
    const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
    const pipelines = {};
    for (const entryPoint of ["noise", "normalise", "dft", "shape_spectrum", "finish"]) {
      pipelines[entryPoint] = device.createComputePipeline({ layout: pipelineLayout, compute: { module, entryPoint } });
    }
    return new GffShader(device, layout, pipelines);
  }

  constructor(device, layout, pipelines) {
    Object.assign(this, { device, layout, pipelines });
  }

  async sample(d, gamma, seed) {
    const { device } = this;
    if (d > 256) throw new Error(`the GPU path takes sizes up to 256, got ${d}`);
    const n = d * d;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const bufs = [0, 1].map(() => device.createBuffer({ size: n * 8, usage }));
    const scale = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    const params = device.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const read = device.createBuffer({ size: n * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    let cur = 0; // the buffer holding the latest values
    const pass = (entry, { sign = -1, axis = 1, groups = Math.ceil(n / 64) } = {}) => {
      const p = new ArrayBuffer(32);
      const u = new Uint32Array(p), f = new Float32Array(p);
      u[0] = d; u[1] = seed >>> 0; f[2] = gamma; f[3] = sign; u[4] = axis;
      device.queue.writeBuffer(params, 0, p);
      const group = device.createBindGroup({
        layout: this.layout,
        entries: [
          { binding: 0, resource: { buffer: params } },
          { binding: 1, resource: { buffer: bufs[cur] } },
          { binding: 2, resource: { buffer: bufs[1 - cur] } },
          { binding: 3, resource: { buffer: scale } },
        ],
      });
      const enc = device.createCommandEncoder();
      const cp = enc.beginComputePass();
      cp.setPipeline(this.pipelines[entry]);
      cp.setBindGroup(0, group);
      cp.dispatchWorkgroups(groups);
      cp.end();
      device.queue.submit([enc.finish()]);
      if (entry !== "normalise") cur = 1 - cur;
    };
    pass("noise");
    pass("normalise", { groups: 1 });
    pass("dft", { axis: 1 });
    pass("dft", { axis: 0 });
    pass("shape_spectrum");
    pass("dft", { axis: 1, sign: 1 });
    pass("dft", { axis: 0, sign: 1 });
    pass("finish");
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(bufs[cur], 0, read, 0, n * 8);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const pairs = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    [...bufs, scale, params, read].forEach((b) => b.destroy());
    return Float32Array.from({ length: n }, (_, i) => pairs[2 * i]);
  }
}
