"""What tritonclient.grpc sees of a server: `python triton_grpc_client.py CHECK TARGET` prints it as JSON.

Run in its own process by test_grpc.py: tritonclient's and KServe's generated modules both define the
`inference` protobuf package, and one Python process can load only one of them.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as triton

FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]

# The datatypes of test_grpc.DATATYPES, as numpy arrays tritonclient sends raw.
VALUES = {
    "BOOL": np.array([True, False]),
    "UINT8": np.array([0, 255], np.uint8),
    "UINT16": np.array([1, 65535], np.uint16),
    "UINT32": np.array([1, 2**32 - 1], np.uint32),
    "UINT64": np.array([1, 2**64 - 1], np.uint64),
    "INT8": np.array([-128, 127], np.int8),
    "INT16": np.array([-1, 300], np.int16),
    "INT32": np.array([-1, 2**31 - 1], np.int32),
    "INT64": np.array([-1, -(2**63)], np.int64),
    "FP16": np.array([1.5, -2.0], np.float16),
    "FP32": np.array([1.5, -2.25], np.float32),
    "FP64": np.array([1e300, -0.5], np.float64),
    "BYTES": np.array([b"ab", b"c d"], dtype=np.object_),
}


def tensor(array, datatype="FP32", name="input"):
    i = triton.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array)
    return i


def plain(a):
    if a.dtype == np.object_:
        return [bytes(x).decode() for x in a.ravel()]
    return a.tolist()


def iris(c):
    model = c.get_model_metadata("iris")
    meta = c.get_server_metadata()
    result = c.infer("iris", [tensor(np.array(FLOWERS, np.float32))], request_id="triton-1")
    each = []
    for flower in FLOWERS:
        r = c.infer("iris", [tensor(np.array([flower], np.float32))], outputs=[triton.InferRequestedOutput("label")])
        each.append({"outputs": [o.name for o in r.get_response().outputs], "label": plain(r.as_numpy("label"))})
    try:
        c.infer("iris", [tensor(np.zeros((1, 5), np.float32))])
        bad = None
    except triton.InferenceServerException as e:
        bad = {"status": e.status(), "message": e.message()}
    return {
        "live": c.is_server_live(),
        "ready": c.is_server_ready(),
        "model_ready": c.is_model_ready("iris"),
        "server": {"name": meta.name, "version": meta.version},
        "model": {
            "name": model.name,
            "platform": model.platform,
            "inputs": [[t.name, t.datatype, list(t.shape)] for t in model.inputs],
            "outputs": [[t.name, t.datatype, list(t.shape)] for t in model.outputs],
        },
        "id": result.get_response().id,
        "label": plain(result.as_numpy("label")),
        "probabilities": plain(result.as_numpy("probabilities")),
        "each": each,
        "bad": bad,
    }


def datatypes(c):
    result = c.infer("all", [tensor(v, dt, f"in_{dt}") for dt, v in VALUES.items()])
    outputs = {o.name: o.datatype for o in result.get_response().outputs}
    return {dt: {"datatype": outputs[f"out_{dt}"], "values": plain(result.as_numpy(f"out_{dt}")),
                 "sent": plain(v)} for dt, v in VALUES.items()}


if __name__ == "__main__":
    check, target = sys.argv[1], sys.argv[2]
    with triton.InferenceServerClient(target) as client:
        print(json.dumps({"iris": iris, "datatypes": datatypes}[check](client)))
