"""One zoo posterior, one seed, defaults (``fit()`` and nothing else): mean and sd errors against
the long NUTS reference, the verdict, the cost per stage. Prints one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/zoo_quick.py random_walk_missing [auto|off] [seed] [progress]

(the second argument is the ``gaussian_stage`` setting; a fourth argument shows the progress bar; ``posteriors_zoo.py`` runs the full
table over seeds.)"""
import sys, json, time, torch, warnings, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import freeflow as ff
import zoo_models as zm
name = sys.argv[1]; stage = sys.argv[2] if len(sys.argv) > 2 else "auto"; seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
ref = json.load(open(__import__("pathlib").Path(__file__).resolve().parent / "results" / "zoo_reference" / f"{name}.json"))["unconstrained"]
post = zm.posterior(name)
t = time.time()
s = ff.OneStepSampler(post, seed=seed, gaussian_stage=stage)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    s.fit(progress=len(sys.argv) > 4 and sys.argv[4] == "progress")
fit_s = time.time() - t
x = s.sample_unconstrained(20000).double().numpy()
m, sd = np.array(ref["mean"]), np.array(ref["sd"])
err_m = np.abs(x.mean(0) - m) / sd; err_s = np.abs(x.std(0) / sd - 1)
j, k = err_m.argmax(), err_s.argmax()
right = err_m.max() <= 0.1 and err_s.max() <= 0.1
rel = s.last_reliability
print(json.dumps({"model": name, "stage": stage, "seed": seed, "fit_s": round(fit_s, 1), "steps": s.steps_done,
                  "max_mean_err_sd": round(float(err_m.max()), 3), "at": ref["names"][j],
                  "max_sd_err": round(float(err_s.max()), 3), "sd_at": ref["names"][k], "right": bool(right),
                  "trusted": rel.trusted, "verdict": rel.verdict[:300], "gaussian": s.gaussian_fit, "rel": {k: v for k, v in rel.to_dict().items() if k.startswith(("mcmc", "gibbs", "pareto_k", "ess", "tail", "raw"))}, "sd_ratio_at": float((x.std(0) / sd)[k]), "cost": s.cost()}))
