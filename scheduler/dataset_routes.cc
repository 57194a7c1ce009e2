#include "scheduler/dataset_routes.h"

#include "store/activation_dataset_store.h"

namespace lattice {

void AddDatasetRoutes(Router& r, StateStore* store) {
  r.Add("GET", "/v1/datasets", [store](HttpRequest&) {
    auto list = ActivationDatasetStore(store).List();
    if (!list.ok()) return HttpResponse::FromStatus(list.status());
    nlohmann::json out = nlohmann::json::array();
    for (const ActivationDatasetRecord& d : *list) out.push_back(d.ToJson());
    return HttpResponse::Json(200, {{"datasets", out}});
  });
  r.Add("GET", "/v1/datasets/{name}", [store](HttpRequest& req) {
    auto d = ActivationDatasetStore(store).Get(req.path_params["name"]);
    if (!d.ok()) return HttpResponse::FromStatus(d.status());
    return HttpResponse::Json(200, d->ToJson());
  });
}

}  // namespace lattice
