//! Sign agreement: `sign(x) == where(c, a, b)`, with `a` and `b` among the constants
//! 1, -1 and 0, becomes `where(c, x ? 0, x ? 0)`: `sign(x) == 1` exactly when `x > 0`,
//! `sign(x) == -1` when `x < 0` and `sign(x) == 0` when `x == 0` (sign keeps ±0 and NaN
//! as they are, and NaN equals nothing; `-0 == 0`), and `where` picks by the same `c`
//! either way. Same bits; two comparisons and a choice instead of the sign's two
//! comparisons and two choices, the choice of the constant and the equality. TIES tests
//! each task vector's sign against the elected one (`sign(tau) == where(s >= 0, 1, -1)`)
//! this way, once per model per element. Runs before CSE (which merges the zeros it
//! adds); DCE drops what it leaves.

use crate::ir::graph::{Graph, NTy, Node, NodeId, NodeOp, STy, Scalar};
use crate::ir::kernel::{BinOp, UnOp};

pub fn sign_match(g: Graph) -> Graph {
    let mut nodes: Vec<Node> = Vec::with_capacity(g.nodes.len());
    let mut map: Vec<NodeId> = Vec::with_capacity(g.nodes.len());
    for mut n in g.nodes {
        n.args = n.args.iter().map(|&a| map[a as usize]).collect();
        let id = match rewrite(&mut nodes, &n) {
            Some(id) => id,
            None => push(&mut nodes, n),
        };
        map.push(id);
    }
    Graph {
        output: map[g.output as usize],
        nodes,
        input_shapes: g.input_shapes,
    }
}

fn push(nodes: &mut Vec<Node>, n: Node) -> NodeId {
    nodes.push(n);
    (nodes.len() - 1) as NodeId
}

/// The nodes that stand for `n` (its arguments already renumbered) when it is a sign
/// test, pushed onto `nodes`; None to keep `n`.
fn rewrite(nodes: &mut Vec<Node>, n: &Node) -> Option<NodeId> {
    if !matches!(n.op, NodeOp::Bin(BinOp::Eq)) || !n.ty.is_tensor() {
        return None;
    }
    let [a, b] = n.args[..] else { return None };
    let is = |id: NodeId, f: fn(&NodeOp) -> bool| f(&nodes[id as usize].op);
    let (s, w) = [(a, b), (b, a)].into_iter().find(|&(s, w)| {
        is(s, |o| matches!(o, NodeOp::Un(UnOp::Sign))) && is(w, |o| matches!(o, NodeOp::Where))
    })?;
    let x = nodes[s as usize].args[0];
    // sign(x) has x's shape: the comparisons with 0 do too.
    let x_ty = nodes[x as usize].ty.clone();
    if !x_ty.is_tensor() || x_ty != nodes[s as usize].ty {
        return None;
    }
    let [c, p, q] = nodes[w as usize].args[..] else {
        return None;
    };
    let (cp, cq) = (test(&nodes[p as usize])?, test(&nodes[q as usize])?);
    let zero = push(
        nodes,
        Node {
            op: NodeOp::Const(Scalar::F32(0.0)),
            args: vec![],
            ty: NTy::Scalar(STy::F32),
        },
    );
    let mut compare = |op: BinOp| {
        push(
            nodes,
            Node {
                op: NodeOp::Bin(op),
                args: vec![x, zero],
                ty: x_ty.clone(),
            },
        )
    };
    let tp = compare(cp);
    let tq = if cq == cp { tp } else { compare(cq) };
    Some(push(
        nodes,
        Node {
            op: NodeOp::Where,
            args: vec![c, tp, tq],
            ty: n.ty.clone(),
        },
    ))
}

/// The comparison of `x` with 0 that `sign(x) == v` is, for a constant `v` of 1, -1
/// or 0.
fn test(v: &Node) -> Option<BinOp> {
    let v = match v.op {
        NodeOp::Const(Scalar::F32(v)) => v as f64,
        NodeOp::Const(Scalar::Int(i)) => i as f64,
        _ => return None,
    };
    match v {
        1.0 => Some(BinOp::Gt),
        -1.0 => Some(BinOp::Lt),
        0.0 => Some(BinOp::Eq),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::dce::dce;
    use super::*;
    use crate::ir::reference::{bin, un};

    /// Evaluates an elementwise graph of inputs, constants, unary and binary operations
    /// and `where` with the kernels' reference semantics.
    fn eval(g: &Graph, inputs: &[Vec<f32>]) -> Vec<f32> {
        let n = inputs[0].len();
        let mut vals: Vec<Vec<f32>> = Vec::new();
        for node in &g.nodes {
            let arg = |j: usize| &vals[node.args[j] as usize];
            let v: Vec<f32> = match node.op {
                NodeOp::Input(i) => inputs[i as usize].clone(),
                NodeOp::Const(c) => vec![c.as_f32(); n],
                NodeOp::Un(op) => arg(0).iter().map(|&x| un(op, x)).collect(),
                NodeOp::Bin(op) => (0..n).map(|e| bin(op, arg(0)[e], arg(1)[e])).collect(),
                NodeOp::Where => (0..n)
                    .map(|e| {
                        if arg(0)[e] != 0.0 {
                            arg(1)[e]
                        } else {
                            arg(2)[e]
                        }
                    })
                    .collect(),
                ref op => panic!("eval: {op:?}"),
            };
            vals.push(v);
        }
        vals[g.output as usize].clone()
    }

    fn node(op: NodeOp, args: &[NodeId], ty: &NTy) -> Node {
        Node {
            op,
            args: args.to_vec(),
            ty: ty.clone(),
        }
    }

    /// The graph `sign(x) == where(c, p, q)` (or with the equality's sides swapped) on
    /// x and c of four elements.
    fn graph(p: Scalar, q: Scalar, swap: bool) -> Graph {
        let t = NTy::Tensor(vec![4]);
        let f = NTy::Scalar(STy::F32);
        let eq = if swap { [5, 4] } else { [4, 5] };
        Graph {
            nodes: vec![
                node(NodeOp::Input(0), &[], &t),            // 0: x
                node(NodeOp::Input(1), &[], &t),            // 1: c
                node(NodeOp::Const(p), &[], &f),            // 2
                node(NodeOp::Const(q), &[], &f),            // 3
                node(NodeOp::Un(UnOp::Sign), &[0], &t),     // 4
                node(NodeOp::Where, &[1, 2, 3], &t),        // 5
                node(NodeOp::Bin(BinOp::Eq), &eq, &t),      // 6
                node(NodeOp::Bin(BinOp::Add), &[6, 0], &t), // 7
            ],
            output: 7,
            input_shapes: vec![vec![4]; 2],
        }
    }

    /// Every constant pair the pass takes, on special values (±0, NaN, ±inf, tiny and
    /// large) and conditions including NaN and -0: the interpreter's result before and
    /// after the rewrite, bit for bit.
    #[test]
    fn sign_tests_become_comparisons_with_the_same_bits() {
        let consts = [
            Scalar::F32(1.0),
            Scalar::F32(-1.0),
            Scalar::F32(0.0),
            Scalar::F32(-0.0),
            Scalar::Int(1),
            Scalar::Int(-1),
        ];
        let xs = [
            0.0f32,
            -0.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-45,
            -1e-45,
            3.5,
            -2.0,
            1.0,
            -1.0,
        ];
        let cs = [0.0f32, -0.0, 1.0, f32::NAN, -3.0, 0.5, 0.0, 1.0];
        for &p in &consts {
            for &q in &consts {
                for swap in [false, true] {
                    let g = graph(p, q, swap);
                    let r = sign_match(g.clone());
                    let signs = r
                        .nodes
                        .iter()
                        .filter(|n| matches!(n.op, NodeOp::Un(UnOp::Sign)))
                        .count();
                    assert_eq!(signs, 1, "{p:?} {q:?}: rewritten, sign left to DCE");
                    let r = dce(r);
                    assert!(
                        !r.nodes
                            .iter()
                            .any(|n| matches!(n.op, NodeOp::Un(UnOp::Sign))),
                        "{p:?} {q:?}: no sign after DCE"
                    );
                    r.verify().unwrap();
                    for x in xs.chunks(4) {
                        for c in cs.chunks(4) {
                            let inputs = [x.to_vec(), c.to_vec()];
                            let (want, got) = (eval(&g, &inputs), eval(&r, &inputs));
                            let bits =
                                |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                            assert_eq!(
                                bits(&got),
                                bits(&want),
                                "{p:?} {q:?} swap {swap} x {x:?} c {c:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Other constants (2, NaN) and a sign compared with something else stay.
    #[test]
    fn other_tests_stay() {
        for p in [Scalar::F32(2.0), Scalar::F32(f32::NAN)] {
            let g = graph(p, Scalar::F32(1.0), false);
            let r = sign_match(g.clone());
            assert_eq!(r.nodes.len(), g.nodes.len(), "{p:?}");
        }
    }
}
