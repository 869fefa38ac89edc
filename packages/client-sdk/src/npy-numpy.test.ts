import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeNpy, parseNpy } from "./npy.js";

// Files written and read by real NumPy; skipped when python3 or NumPy is missing.
function hasNumpy(): boolean {
  const r = spawnSync("python3", ["-c", "import numpy"], { stdio: "ignore" });
  return r.status === 0;
}

describe.skipIf(!hasNumpy())("numpy interop (python3)", () => {
  const dir = mkdtempSync(join(tmpdir(), "dce-npy-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const py = (code: string): string => execFileSync("python3", ["-c", code], { encoding: "utf8" });

  it("writes files numpy.load reads, byte-identical to numpy.save", () => {
    const rows = 7;
    const cols = 5;
    const data = Float64Array.from({ length: rows * cols }, (_, i) => i * 0.25 - 3);
    const path = join(dir, "ours.npy");
    writeFileSync(path, encodeNpy({ rows, cols, data }));
    const out = py(
      `import numpy as np, io, sys
a = np.load(${JSON.stringify(path)})
assert a.dtype == np.float64 and a.shape == (${rows}, ${cols}) and a.flags.c_contiguous
expected = (np.arange(${rows * cols}) * 0.25 - 3).reshape(${rows}, ${cols})
assert (a == expected).all()
b = io.BytesIO(); np.save(b, expected)
assert b.getvalue() == open(${JSON.stringify(path)}, 'rb').read(), 'bytes differ from numpy.save'
print('ok')`,
    );
    expect(out.trim()).toBe("ok");
  });

  it("reads files numpy writes: f8, f4, and format versions 1, 2, 3", () => {
    const out = py(
      `import numpy as np
from numpy.lib import format as f
a = (np.arange(12, dtype=np.float64) / 3).reshape(3, 4)
np.save(${JSON.stringify(join(dir, "v1.npy"))}, a)
np.save(${JSON.stringify(join(dir, "f4.npy"))}, a.astype(np.float32))
np.save(${JSON.stringify(join(dir, "tr.npy"))}, np.ascontiguousarray(a.T))
for v in [(2, 0), (3, 0)]:
    with open(${JSON.stringify(dir)} + '/v%d.npy' % v[0], 'wb') as fh:
        f.write_array(fh, a, version=v)
print('ok')`,
    );
    expect(out.trim()).toBe("ok");
    const expected = Array.from({ length: 12 }, (_, i) => i / 3);
    for (const name of ["v1", "v2", "v3"]) {
      const m = parseNpy(readFileSync(join(dir, `${name}.npy`)));
      expect([m.rows, m.cols]).toEqual([3, 4]);
      expect(Array.from(m.data)).toEqual(expected);
    }
    const f4 = parseNpy(readFileSync(join(dir, "f4.npy")));
    expect(Array.from(f4.data)).toEqual(expected.map((x) => Math.fround(x)));
    const tr = parseNpy(readFileSync(join(dir, "tr.npy")));
    expect([tr.rows, tr.cols]).toEqual([4, 3]);
    expect(tr.data[1]).toBe(4 / 3); // row 0, col 1 of A^T is A[1][0]
  });

  it("rejects what numpy writes for unsupported arrays", () => {
    py(
      `import numpy as np
np.save(${JSON.stringify(join(dir, "i8.npy"))}, np.zeros((2, 2), dtype='<i8'))
np.save(${JSON.stringify(join(dir, "obj.npy"))}, np.array([[1.0, None]], dtype=object))
np.save(${JSON.stringify(join(dir, "f2.npy"))}, np.zeros((2, 2), dtype='>f2'))
np.save(${JSON.stringify(join(dir, "3d.npy"))}, np.asfortranarray(np.zeros((2, 3, 4), dtype='>f8')))
np.save(${JSON.stringify(join(dir, "1d.npy"))}, np.zeros(3))`,
    );
    expect(() => parseNpy(readFileSync(join(dir, "i8.npy")))).toThrow(/dtype '<i8' is not supported/);
    expect(() => parseNpy(readFileSync(join(dir, "obj.npy")))).toThrow(/dtype '\|O' is not supported/);
    expect(() => parseNpy(readFileSync(join(dir, "f2.npy")))).toThrow(/dtype '>f2' is not supported/);
    expect(() => parseNpy(readFileSync(join(dir, "3d.npy")))).toThrow(/array must be 2-D, got shape \(2, 3, 4\)/);
    expect(() => parseNpy(readFileSync(join(dir, "1d.npy")))).toThrow(/got shape \(3,\)/);
  });

  describe("reads every float layout numpy writes as numpy.load does", () => {
    // Each case is written by numpy; the expected values are what numpy.load reads back.
    // `transpose` saves a.T of a C-order a, the usual way a Fortran-order file is made.
    const cases = [
      { descr: "<f8", fortran: true, shape: [7, 5], transpose: true },
      ...["<f8", ">f8", "<f4", ">f4"].flatMap((descr) =>
        [false, true].flatMap((fortran) =>
          [
            [5, 7],
            [1, 6],
            [6, 1],
            [0, 4],
            [4, 0],
            [0, 0],
          ].map((shape) => ({ descr, fortran, shape, transpose: false })),
        ),
      ),
    ].map((c, i) => ({ ...c, name: `case${i}` }));

    beforeAll(() => {
      // Shapes with a dimension <= 1 are C-contiguous, so numpy.save never marks them Fortran:
      // those headers are written with numpy's own header writer and the data in Fortran order.
      const code = `import json, sys, numpy as np
from numpy.lib import format as fmt
rng = np.random.default_rng(17)
for c in json.loads(sys.argv[1]):
    path = ${JSON.stringify(dir)} + '/' + c['name'] + '.npy'
    r, k = c['shape']
    x = rng.standard_normal((r, k)) * 10.0 ** rng.integers(-40, 40, (r, k))
    if r * k >= 6:
        x.flat[:6] = [-0.0, np.inf, -np.inf, np.nan, 5e-324, 3.0]
    with np.errstate(over='ignore'):  # float32 overflows to inf, as intended
        x = x.astype(c['descr'])
    if c['transpose']:
        np.save(path, np.ascontiguousarray(x.T).T)
    elif c['fortran'] and min(r, k) <= 1:
        with open(path, 'wb') as fh:
            fmt.write_array_header_1_0(fh, {'descr': fmt.dtype_to_descr(x.dtype), 'fortran_order': True, 'shape': x.shape})
            fh.write(x.tobytes(order='F'))
    else:
        np.save(path, np.asfortranarray(x) if c['fortran'] else x)
    with open(path, 'rb') as fh:
        fmt.read_magic(fh)
        shape, fortran, dtype = fmt.read_array_header_1_0(fh)
    assert (list(shape), fortran, dtype.str) == (c['shape'], c['fortran'], c['descr']), (c, shape, fortran, dtype)
    loaded = np.load(path)
    assert np.array_equal(loaded, x, equal_nan=True)
    with open(path + '.expected', 'wb') as fh:
        fh.write(loaded.astype('<f8').tobytes(order='C'))
print('ok')`;
      expect(execFileSync("python3", ["-c", code, JSON.stringify(cases)], { encoding: "utf8" }).trim()).toBe("ok");
    });

    it.each(cases)("$descr fortran $fortran shape $shape (transpose $transpose)", ({ name, shape }) => {
      const m = parseNpy(readFileSync(join(dir, `${name}.npy`)));
      const expected = readFileSync(join(dir, `${name}.npy.expected`));
      expect([m.rows, m.cols]).toEqual(shape);
      expect(Array.from(m.data)).toEqual(Array.from(new Float64Array(new Uint8Array(expected).buffer)));
    });
  });
});
