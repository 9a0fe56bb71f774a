"""The CUDA placement predicted from ONNX Runtime's documented kernel table: real ONNX files, real kernel rows."""
from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from utils import cuda_placement as C
from utils import quantize as Q


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_uint8_activations_fall_back_to_the_cpu_and_cross_twice(tmp_path):
    """x -> Relu (GPU) -> DynamicQuantizeLinear (no CUDA kernel) -> MatMulInteger with uint8 activations (CUDA takes
    int8 only) -> Cast -> Relu (GPU): the integer part on the CPU, one Memcpy each way."""
    w = helper.make_tensor("w", TensorProto.INT8, [4, 4], [1] * 16)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu0"),
             helper.make_node("DynamicQuantizeLinear", ["r"], ["q", "s", "z"], name="dql"),
             helper.make_node("MatMulInteger", ["q", "w", "z"], ["mm"], name="mmi"),
             helper.make_node("Cast", ["mm"], ["f"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Relu", ["f"], ["y"], name="relu1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    p = C.predict(_save(g, tmp_path / "dyn.onnx"))
    assert p["cpu_fallback"] == {"DynamicQuantizeLinear: no CUDA kernel": 1,
                                 "MatMulInteger: no CUDA kernel for input 0 of type uint8": 1}
    assert p["cuda_nodes"] == 3 and p["memcpy_predicted"] == 2      # r to the CPU, mm back to the GPU
    assert p["integer_nodes_on_cuda"] == 0


def test_int8_activations_stay_on_the_gpu(tmp_path):
    w = helper.make_tensor("w", TensorProto.INT8, [4, 4], [1] * 16)
    nodes = [helper.make_node("Add", ["x", "x"], ["x2"], name="add"),
             helper.make_node("MatMulInteger", ["a", "w"], ["y"], name="mmi")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                                       helper.make_tensor_value_info("a", TensorProto.INT8, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4]),
                           helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 4])], [w])
    p = C.predict(_save(g, tmp_path / "s8.onnx"))
    assert p["cpu_nodes"] == 0 and p["memcpy_predicted"] == 0 and p["integer_nodes_on_cuda"] == 1


def test_shape_computations_stay_on_the_cpu_without_a_copy_into_the_kernel_that_reads_them(tmp_path):
    shape = [helper.make_node("Shape", ["x"], ["sh"], name="shape"),
             helper.make_node("Reshape", ["x", "sh"], ["y"], name="reshape")]
    g = helper.make_graph(shape, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    p = C.predict(_save(g, tmp_path / "shape.onnx"))
    assert p["cpu_shape_nodes"] == 1 and p["cuda_nodes"] == 1 and p["memcpy_predicted"] == 0


def test_the_dynamic_int8_file_crosses_many_times_its_fp32_export_few(tiny_onnx, tmp_path):
    src = tiny_onnx[0]
    dyn = tmp_path / "int8-dynamic.onnx"
    Q.quantize_dynamic_int8(src, dyn, per_channel=True, weight_type="qint8")
    fp, q8 = C.predict(src), C.predict(dyn)
    n_int = sum(n.op_type == "MatMulInteger" for n in onnx.load(str(dyn)).graph.node)
    assert n_int > 0 and q8["memcpy_predicted"] >= fp["memcpy_predicted"] + n_int    # at least a copy per product
    assert "DynamicQuantizeLinear: no CUDA kernel" in q8["cpu_fallback"]
    assert not fp["cpu_fallback"]           # every FP32 operator has a CUDA kernel for float


def test_the_kernel_table_covers_every_operator_of_the_study_files(tiny_onnx, tmp_path):
    """A file with an operator the vendored table does not list is predicted as an unknown fallback, never silently
    as GPU: the table must name every operator the recipes produce (here: dynamic, its fused form, FP16)."""
    src = tiny_onnx[0]
    Q.quantize_dynamic_int8(src, tmp_path / "d.onnx", per_channel=False, weight_type="qint8")
    Q.convert_fp16(src, tmp_path / "h.onnx")
    for f in (src, tmp_path / "d.onnx", tmp_path / "h.onnx"):
        assert not [k for k in C.predict(f)["cpu_fallback"] if "not in the kernel table" in k], f.name
    t = C.kernel_table()
    assert t["source"].endswith("docs/OperatorKernels.md") and t["source_commit"] in t["source"]
    assert t["ops"]["ai.onnx"]["MatMulInteger"] == {"0": ["int8"], "1": ["int8"]}


def test_a_measured_placement_is_set_beside_the_prediction():
    pred = {"memcpy_predicted": 93, "cpu_nodes": 363}
    measured = [{"providers": ["CPUExecutionProvider"], "nodes_per_provider": {"CPUExecutionProvider": 600}},
                {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"], "memcpy_nodes": 90,
                 "nodes_per_provider": {"CUDAExecutionProvider": 300, "CPUExecutionProvider": 360}}]
    assert C.compare(pred, measured) == {"memcpy_predicted": 93, "memcpy_measured": 90, "cpu_nodes_predicted": 363,
                                         "cpu_nodes_measured": 360}
    assert C.compare(pred, measured[:1]) == {"measured": None}


@pytest.mark.parametrize("profile", ["default"])
def test_the_prediction_agrees_with_a_committed_gpu_run(profile):
    """Where a GPU run's placement is committed (results/<profile>/bench_gpu.json), the prediction of each file it
    measured is within 25% of its Memcpy count: the test that keeps the kernel table and the rules honest."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "results" / profile
    gpu, pred = root / "bench_gpu.json", root / "cuda_placement.json"
    if not (gpu.is_file() and pred.is_file()):
        pytest.skip(f"no GPU run committed for {profile} (results/{profile}/bench_gpu.json)")
    files = json.loads(pred.read_text())["files"]
    for name, rec in json.loads(gpu.read_text()).get("placement", {}).items():
        c = C.compare(files[name], rec) if name in files else {"measured": None}
        if c.get("memcpy_measured") is not None:
            assert abs(c["memcpy_predicted"] - c["memcpy_measured"]) <= 0.25 * max(4, c["memcpy_measured"]), name
